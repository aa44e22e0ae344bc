"""Memory is bounded (docs/contract.md "Delivery and storage guarantees"; docs/decisions/0018-bounded-inflation.md).

kafka-python inflates a compressed batch whole: it is held to KAFKA_MAX_BATCH_INFLATED_BYTES, and a batch
past it is read a record at a time by logs/pipeline/record_batches.py, where a record past
KAFKA_MAX_RECORD_BYTES is dead-lettered by reference. End to end: a zstd bomb through the real consumer.
"""

import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from logs.events import ActivityEvent
from logs.pipeline import compression, kafka_internals
from stack.topics import read_topic
from tests.support.commands import stop_once_caught_up

CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def compressed_batch(value, codec):
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 30)
    builder.append(0, timestamp=1_700_000_000_000, key=None, value=value, headers=[])
    return bytes(builder.build())


@pytest.fixture
def bound_of_4_mib():
    kafka_internals.bound_batch_inflation(4 * 1024 * 1024)
    yield
    kafka_internals.bound_batch_inflation(16 * 1024 * 1024)  # what the settings give every other test


@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS.keys())
def test_kafka_python_inflates_no_batch_past_the_bound_in_any_codec(codec, bound_of_4_mib):
    """Catches a kafka-python release that inflates batches through other names than kafka_internals replaces."""
    with pytest.raises(kafka_internals.BatchTooLargeToInflate, match="inflates past 4194304 bytes"):
        list(DefaultRecordBatch(compressed_batch(b"\0" * (5 * 1024 * 1024), codec)))
    [record] = list(DefaultRecordBatch(compressed_batch(b"x" * (3 * 1024 * 1024), codec)))
    assert record.value == b"x" * (3 * 1024 * 1024)


@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS.keys())
def test_inflating_stops_at_the_limit_without_inflating_the_rest(codec):
    payload = compressed_batch(b"\0" * (8 * 1024 * 1024), codec)[61:]  # the records, as the batch carries them
    with pytest.raises(compression.InflatesPastLimit):
        compression.inflate(codec, payload, limit=1024 * 1024)
    assert all(len(piece) <= compression.CHUNK_BYTES for piece in compression.inflating(codec, payload))


@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS.keys())
def test_a_damaged_payload_is_cannot_inflate_not_a_crash(codec):
    payload = compressed_batch(b"abc" * 100_000, codec)[61:]
    for damaged in (payload[: len(payload) // 2], payload[:8] + b"\xff" * 64 + payload[72:]):
        try:
            inflated = compression.inflate(codec, damaged, limit=1 << 30)
        except compression.CannotInflate:
            continue
        assert inflated != b"abc" * 100_000  # zstd reads a cut frame as a shorter one: the records then end early


def test_a_snappy_block_that_says_it_is_huge_is_refused_before_inflating():
    with pytest.raises(compression.CannotInflate, match="says it inflates to"):
        compression.inflate(compression.SNAPPY, b"\xff\xff\xff\xff\x0f" + b"\0" * 10, limit=1 << 40)


def peak_rss_mb(pid):
    """The process's high-water resident set size so far (Linux VmHWM); 0 once it has exited (a zombie has none)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0.0)


def event_now(user):
    moment = datetime.now(timezone.utc).replace(microsecond=0)
    return ActivityEvent(event_id=str(uuid.uuid4()), user_id=user, action="balance_inquiry", timestamp=moment,
                         balance_cents=100)


BOMB_BYTES = 200 * 1024 * 1024
PEAK_RSS_LIMIT_MB = 300


@pytest.mark.integration
@pytest.mark.brokers("tansu", "kafka")  # the codec's batch as each broker stores and serves it
def test_a_zstd_bomb_is_dead_lettered_by_reference_within_the_memory_bound_and_its_neighbours_are_stored(
        manage, pipeline_env, bootstrap_servers, pipeline_topics, activity_collection):
    topic, dlq_topic = pipeline_topics
    before, after = [event_now(f"user-{n}") for n in range(50)], [event_now(f"user-{n}") for n in range(50, 100)]
    # The client checks the record's inflated size against max_request_size; the broker, the compressed one.
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, compression_type="zstd",
                             max_request_size=BOMB_BYTES + 1024 * 1024,
                             batch_size=16 * 1024, linger_ms=0)
    for event in before:
        producer.send(topic, partition=0, key=event.key, value=event.to_bytes())
    producer.flush()
    bomb = producer.send(topic, partition=0, key=b"user-0", value=b"\0" * BOMB_BYTES).get(timeout=120)
    for event in after:
        producer.send(topic, partition=0, key=event.key, value=event.to_bytes())
    producer.flush()
    producer.close()

    consumer = manage.start("consume_activity", "--metrics-port", "0", name="bomb-consumer")
    peaks = []  # the kernel's high-water mark of its resident set, read before it is stopped
    stop_once_caught_up(manage, consumer, timeout=180, before_stop=lambda: peaks.append(peak_rss_mb(consumer.pid)))
    [peak] = peaks

    stored = set(activity_collection.distinct("_id"))
    assert stored == {event.event_id for event in before + after}
    [dead] = read_topic(bootstrap_servers, dlq_topic)  # acknowledged before the consumer committed and exited
    headers = dict(dead.headers)
    assert (dead.key, dead.value) == (b"user-0", b"\0" * 1024)
    assert headers["dlq.source.offset"] == str(bomb.offset).encode()
    assert int(headers["dlq.original.size"]) > BOMB_BYTES
    assert 0 < int(headers["dlq.original.batch.compressed.size"]) < 64 * 1024
    assert b"inflates past the 1048576-byte bound" in headers["dlq.reason"]
    print(f"consumer peak RSS through the bomb: {peak:.0f} MB")
    assert 0 < peak <= PEAK_RSS_LIMIT_MB, f"peak RSS {peak:.0f} MB"
