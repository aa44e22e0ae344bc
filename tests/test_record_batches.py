"""The record-batch reader of logs/pipeline/record_batches.py, against batches kafka-python's own builder writes."""

import pytest
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from logs.pipeline.record_batches import UnreadableBatch, first_batch
from tests.support.hostile import UndecodableHeaderName

RECORDS = [
    (b"user-1", b'{"a":1}', [("trace", b"t1")]),
    (None, None, []),
    (b"hostile", b"{}", [("ok", b"1"), (UndecodableHeaderName("x"), b"v"), ("none", None)]),
    (b"user-2", b'{"b":2}' * 50, []),
]


def built_batch(records, *, codec=0, base_offset=40):
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for delta, (key, value, headers) in enumerate(records):
        builder.append(delta, timestamp=1_700_000_000_000 + delta, key=key, value=value, headers=headers)
    data = bytearray(builder.build())
    data[0:8] = base_offset.to_bytes(8, "big")  # the broker assigns the offsets; the CRC does not cover them
    return bytes(data)


def test_kafka_python_still_cannot_decode_a_batch_with_a_header_name_that_is_not_utf8():
    """The reason logs/pipeline/record_batches.py exists: when this fails, kafka-python decodes such batches and
    the consumer's fallback to this reader can go."""
    with pytest.raises(CorruptRecordError):
        list(DefaultRecordBatch(built_batch(RECORDS)))


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4], ids=["none", "gzip", "snappy", "lz4", "zstd"])
def test_a_batch_decodes_to_what_kafka_python_reads_and_the_header_name_that_is_not_utf8_is_the_only_problem(codec):
    readable = [record for index, record in enumerate(RECORDS) if index != 2]
    expected = list(DefaultRecordBatch(built_batch(readable, codec=codec, base_offset=0)))

    batch = first_batch(built_batch(RECORDS, codec=codec) + b"next batch", topic="t", partition=3)

    assert (batch.base_offset, batch.next_offset) == (40, 44)
    assert [raw.record.offset for raw in batch.records] == [40, 41, 42, 43]
    assert [raw.problem is None for raw in batch.records] == [True, True, False, True]
    assert "header name not UTF-8: b'\\xff\\xfetrace'" in batch.records[2].problem
    assert batch.records[2].record.headers == [("ok", b"1"), ("none", None)]
    ours = [raw.record for index, raw in enumerate(batch.records) if index != 2]
    assert [(r.key, r.value, r.headers) for r in ours] == [(r.key, r.value, r.headers) for r in expected]
    assert [raw.record.timestamp for raw in batch.records] == [1_700_000_000_000 + delta for delta in range(4)]
    assert all((r.topic, r.partition) == ("t", 3) for r in ours)


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:-1], "does not fit"),
    (lambda data: data[:30], "shorter than a batch header"),
    (lambda data: data[:70] + bytes([data[70] ^ 1]) + data[71:], "CRC-32C mismatch"),
    (lambda data: data[:16] + b"\x01" + data[17:], "message format v1"),
])
def test_a_damaged_batch_is_refused_whole(damage, message):
    with pytest.raises(UnreadableBatch, match=message):
        first_batch(damage(built_batch(RECORDS)), topic="t", partition=0)
