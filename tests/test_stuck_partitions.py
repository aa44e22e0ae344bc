"""Partitions the consumer cannot move on by itself (logs/consuming.py, `StuckPartitions`), caused for real.

A damaged record batch: Apache Kafka checks a batch's CRC when it is produced, not when it serves a fetch
(it sends the segment's bytes as they are on disk), so a batch damaged on disk reaches the consumer as is.
"""

import struct
import uuid

import pytest
from kafka import KafkaProducer

from logs.events import ActivityEvent
from stack import processes

from conftest import brokers_under_test, scrape, value, wait_for

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


def valid_event(user):
    return ActivityEvent.from_dict({"eventId": str(uuid.uuid4()), "userId": user, "action": "balance_inquiry",
                                    "balance": "10.00", "timestamp": "2026-11-25T12:00:00Z"})


def send_batch(producer, topic, partition, events):
    """`events` in one record batch of their own on `partition`; returns its base offset."""
    futures = [producer.send(topic, partition=partition, key=event.key, value=event.to_bytes()) for event in events]
    producer.flush(timeout=30)
    return futures[0].get(timeout=0).offset


@pytest.mark.skipif("kafka" not in brokers_under_test(), reason="TEST_BROKERS leaves Apache Kafka out")
@pytest.mark.parametrize("kafka_broker", ["kafka"], indirect=True)
def test_a_batch_damaged_on_disk_pauses_its_partition_only_and_the_consumer_keeps_running(
        kafka_broker, manage, pipeline_env, bootstrap_servers, pipeline_settings, activity_collection):
    from logs.broker import ensure_topics

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
