"""Partitions the consumer cannot move on by itself (logs/pipeline/consuming.py, `StuckPartitions`), caused for real.

A damaged record batch: Apache Kafka checks a batch's CRC when it is produced, not when it serves a fetch
(it sends the segment's bytes as they are on disk), so a batch damaged on disk reaches the consumer as is.

The stall watch: kafka-python 3.0.12's fetcher swallows the retriable errors of a fetch (NotLeader,
UnknownTopicOrPartition, KafkaStorageError, ...; logged at debug) and tries again for ever, so a partition
whose leader cannot serve it stops without a word while its high watermark says records are behind. A
one-node broker cannot make one partition leaderless, so `watch` is tested on a real consumer whose
position is held (it is not polled) at a record, with a short `stall_seconds`.
"""

import struct
import time

import pytest
from kafka import KafkaProducer, TopicPartition

from logs.pipeline.consuming import StuckPartitions
from stack import processes
from tests.support.builders import pipeline, valid_event
from tests.support.hostile import UndecodableHeaderName
from tests.support.metrics import scrape, value
from tests.support.waiting import wait_for

STALL_SECONDS = 2.0

pytestmark = pytest.mark.integration

# baseOffset int64, batchLength int32 (the bytes after it), partitionLeaderEpoch int32, magic int8, crc uint32.
BATCH_START = struct.Struct(">qi")
LENGTH_COUNTS_FROM = 12
CRC_AT = 17
RECORDS_FROM = 61  # the v2 batch header's size: records (or their compressed form) start here


def damage_batch_on_disk(segment, base_offset):
    """Flip the bits of one byte inside the records of the batch that starts at `base_offset`, so that its
    CRC-32C (which covers the batch from its attributes on) no longer matches; the header stays intact."""
    data = bytearray(segment.read_bytes())
    position = 0
    while position + BATCH_START.size <= len(data):
        offset, length = BATCH_START.unpack_from(data, position)
        end = position + LENGTH_COUNTS_FROM + length
        if offset == base_offset:
            assert data[position + 16] == 2 and end - position > RECORDS_FROM, "not a v2 batch with records"
            crc = data[position + CRC_AT:position + CRC_AT + 4]
            data[position + RECORDS_FROM + 2] ^= 0xFF
            assert data[position + CRC_AT:position + CRC_AT + 4] == crc
            with open(segment, "r+b") as file:  # in place: the broker holds the file open
                file.seek(position + RECORDS_FROM + 2)
                file.write(bytes([data[position + RECORDS_FROM + 2]]))
            return
        position = end
    raise AssertionError(f"no batch starts at offset {base_offset} in {segment}")


def send_batch(producer, topic, partition, events):
    """`events` in one record batch of their own on `partition`; returns its base offset."""
    futures = [producer.send(topic, partition=partition, key=event.key, value=event.to_bytes()) for event in events]
    producer.flush(timeout=30)
    return futures[0].get(timeout=0).offset


@pytest.mark.brokers("kafka")  # Tansu keeps its records in memory: there is no segment file to damage
def test_a_batch_damaged_on_disk_pauses_its_partition_only_and_the_consumer_keeps_running(
        kafka_broker, manage, pipeline_env, bootstrap_servers, pipeline_settings, activity_collection):
    from logs.pipeline.broker import ensure_topics

    topic = pipeline_env["KAFKA_TOPIC"]
    ensure_topics(topic, pipeline_env["KAFKA_DLQ_TOPIC"], partitions=2)
    before, damaged, after = ([valid_event(f"user-{batch}{n}") for n in range(3)] for batch in "abc")
    other = [valid_event(f"user-d{n}") for n in range(5)]
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=50)
    try:
        send_batch(producer, topic, 0, before)
        damaged_offset = send_batch(producer, topic, 0, damaged)
        send_batch(producer, topic, 0, after)
        send_batch(producer, topic, 1, other)
    finally:
        producer.close()
    damage_batch_on_disk(kafka_broker.log_dirs / f"{topic}-0" / f"{0:020d}.log", damaged_offset)

    metrics_port = processes.free_port()
    consumer = manage.start("consume_activity", "--metrics-port", str(metrics_port))
    paused = "this record's batch cannot be decoded"
    wait_for(lambda: consumer.poll() is not None or paused in consumer.output(), timeout=60,
             message="the damaged batch's error line")
    assert consumer.poll() is None, consumer.output()

    [line] = [line for line in consumer.output().splitlines() if paused in line]
    assert f"{topic}[0]@{damaged_offset}" in line and "CRC-32C mismatch" in line and "partition 0 is paused" in line
    expected = {event.event_id for event in before + other}
    wait_for(lambda: {document["_id"] for document in activity_collection.find()} == expected, timeout=60,
             message="partition 0's events before the damaged batch and every event of partition 1 stored")
    url = f"http://{processes.HOST}:{metrics_port}/metrics"
    gauge = value(scrape(url), "activity_consumer_undecodable_offset", partition="0")
    assert gauge == damaged_offset
    assert consumer.poll() is None, consumer.output()  # paused, not stopped


def held_consumer(topic, *, records_behind):
    """A consumer outside any group on `topic`[0] that has read its first record and is not polled again:
    its position stays at 1 with `records_behind` more records known to the broker (its high watermark)."""
    from logs.pipeline.broker import create_consumer

    consumer = create_consumer(group_id=None, client_id="held-consumer")
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek(partition, 0)
    wait_for(lambda: consumer.poll(timeout_ms=500, max_records=1), timeout=30, message=f"{topic}[0]@0 read")
    assert consumer.position(partition) == 1 and consumer.highwater(partition) == 1 + records_behind
    return consumer, partition


def watch_of(consumer, topic, *, open_reader=None):
    from logs.pipeline.broker import create_consumer

    return StuckPartitions(pipeline(consumer, topic=topic, group="held", dlq_max_bytes=0,
                                    open_reader=open_reader or (lambda: create_consumer(group_id=None,
                                                                                        client_id="probe"))),
                           stall_seconds=STALL_SECONDS)


@pytest.mark.brokers("tansu", "kafka")  # the batch is fetched as each broker serves it, as bytes
def test_a_partition_held_at_a_record_kafka_python_cannot_decode_is_probed_once_it_has_not_moved_for_stall_seconds(
        pipeline_env, bootstrap_servers, pipeline_topics):
    topic = pipeline_env["KAFKA_TOPIC"]
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    try:
        send_batch(producer, topic, 0, [valid_event("user-1")])
        producer.send(topic, partition=0, key=b"hostile", value=b"{}", headers=[(UndecodableHeaderName("x"), b"v")])
        producer.flush(timeout=30)
        send_batch(producer, topic, 0, [valid_event("user-2")])
    finally:
        producer.close()
    consumer, partition = held_consumer(topic, records_behind=2)
    try:
        stuck = watch_of(consumer, topic)
        started = time.monotonic()
        found = wait_for(stuck.watch, timeout=STALL_SECONDS + 30, interval=0.2, message="the stalled partition probed")
        assert time.monotonic() - started >= STALL_SECONDS
    finally:
        consumer.close()

    [(probed, batch, offset)] = found
    assert (probed, offset, batch.base_offset, batch.next_offset) == (partition, 1, 1, 2)
    [hostile] = batch.records
    assert hostile.record.key == b"hostile" and hostile.problem.startswith("header name not UTF-8")


@pytest.fixture
def own_broker(broker_kind, log_dir, tmp_path):
    """A broker of this test's own, of the session broker's kind, which it may stop."""
    server = processes.broker(processes.free_port(), log_dir / f"own-{broker_kind}-{tmp_path.name}.log",
                              kind=broker_kind, data_dir=tmp_path / "broker").start()
    yield server
    server.kill()


def test_a_stalled_partition_is_not_probed_into_a_crash_while_the_broker_is_away(
        own_broker, pipeline_settings, pipeline_env):
    """Before: the probe's reader raised BrokerUnavailable from `watch`, out of the consume loop."""
    from logs.pipeline.broker import create_consumer, ensure_topics

    pipeline_settings.KAFKA_BOOTSTRAP_SERVERS = f"{processes.HOST}:{own_broker.port}"
    topic = pipeline_env["KAFKA_TOPIC"]
    ensure_topics(topic, partitions=1)
    producer = KafkaProducer(bootstrap_servers=pipeline_settings.KAFKA_BOOTSTRAP_SERVERS, acks="all")
    try:
        send_batch(producer, topic, 0, [valid_event(f"user-{n}") for n in range(3)])
    finally:
        producer.close()
    consumer, _ = held_consumer(topic, records_behind=2)
    attempts = []

    def open_reader():
        attempts.append(time.monotonic())
        return create_consumer(group_id=None, client_id="probe")

    try:
        stuck = watch_of(consumer, topic, open_reader=open_reader)
        own_broker.stop()
        wait_for(lambda: stuck.watch() == [] and attempts, timeout=STALL_SECONDS + 40, interval=0.2,
                 message="a probe tried while the broker is away")
    finally:
        consumer.close()
