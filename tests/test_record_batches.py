"""The record-batch reader of logs/pipeline/record_batches.py, against batches kafka-python's own builder writes."""

import struct
import tracemalloc

import pytest
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.util import calc_crc32c

from logs.pipeline.record_batches import CRC_COVERS_FROM, KEPT_PREFIX_BYTES, UnreadableBatch, read_batch
from tests.support.hostile import UndecodableHeaderName

MAX_RECORD_BYTES = 1024 * 1024


def first_batch(data, *, topic, partition, aborted_transactions=()):
    return read_batch(data, topic=topic, partition=partition, max_record_bytes=MAX_RECORD_BYTES,
                      aborted_transactions=aborted_transactions)

RECORDS = [
    (b"user-1", b'{"a":1}', [("trace", b"t1")]),
    (None, None, []),
    (b"hostile", b"{}", [("ok", b"1"), (UndecodableHeaderName("x"), b"v"), ("none", None)]),
    (b"user-2", b'{"b":2}' * 50, []),
]


def built_batch(records, *, codec=0, base_offset=40, producer_id=-1, transactional=False):
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=transactional,
                                        producer_id=producer_id, producer_epoch=0 if producer_id >= 0 else -1,
                                        base_sequence=0 if producer_id >= 0 else -1, batch_size=1 << 30)
    for delta, (key, value, headers) in enumerate(records):
        builder.append(delta, timestamp=1_700_000_000_000 + delta, key=key, value=value, headers=headers)
    data = bytearray(builder.build())
    data[0:8] = base_offset.to_bytes(8, "big")  # the broker assigns the offsets; the CRC does not cover them
    return bytes(data)


def marker_batch(*, producer_id, base_offset, abort):
    """The control batch a transaction coordinator writes: one record, key (version 0, type 0 abort / 1 commit)."""
    data = bytearray(built_batch([(struct.pack(">hh", 0, 0 if abort else 1), struct.pack(">hi", 0, 0), [])],
                                 base_offset=base_offset, producer_id=producer_id, transactional=True))
    data[21:23] = (int.from_bytes(data[21:23], "big") | 0x20).to_bytes(2, "big")  # attributes: control
    data[17:21] = calc_crc32c(bytes(data[CRC_COVERS_FROM:])).to_bytes(4, "big")
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


def events_at(offsets, *, producer_id=-1, transactional=False):
    return built_batch([(b"user-1", f'{{"n":{offset}}}'.encode(), []) for offset in offsets],
                       base_offset=offsets[0], producer_id=producer_id, transactional=transactional)


def test_an_aborted_transactions_batches_and_its_marker_are_passed_over_to_the_next_batch():
    data = (events_at([10, 11], producer_id=7, transactional=True)
            + marker_batch(producer_id=7, base_offset=12, abort=True) + events_at([13, 14]))
    batch = first_batch(data, topic="t", partition=0, aborted_transactions=[(7, 10)])
    assert [raw.record.offset for raw in batch.records] == [13, 14]
    assert (batch.base_offset, batch.next_offset) == (13, 15)


def test_a_committed_transactions_batch_is_read_and_its_marker_is_never_an_event():
    data = events_at([10, 11], producer_id=7, transactional=True) + marker_batch(producer_id=7, base_offset=12,
                                                                                  abort=False)
    batch = first_batch(data, topic="t", partition=0, aborted_transactions=[])
    assert [raw.record.value for raw in batch.records] == [b'{"n":10}', b'{"n":11}']
    assert first_batch(data[len(events_at([10, 11])):], topic="t", partition=0).records == []


def test_only_the_aborted_producer_is_passed_over_when_transactions_interleave():
    data = (events_at([10], producer_id=7, transactional=True) + events_at([11], producer_id=8, transactional=True)
            + marker_batch(producer_id=7, base_offset=12, abort=True))
    batch = first_batch(data, topic="t", partition=0, aborted_transactions=[(7, 10)])
    assert [raw.record.offset for raw in batch.records] == [11]


def test_an_abort_marker_ends_the_abort_so_the_producers_next_transaction_is_read():
    data = (events_at([10], producer_id=7, transactional=True) + marker_batch(producer_id=7, base_offset=11, abort=True)
            + events_at([12], producer_id=7, transactional=True))
    batch = first_batch(data, topic="t", partition=0, aborted_transactions=[(7, 10)])
    assert [raw.record.offset for raw in batch.records] == [12]


def test_a_fetch_of_only_passed_over_batches_says_where_reading_goes_on():
    data = events_at([10, 11], producer_id=7, transactional=True) + marker_batch(producer_id=7, base_offset=12,
                                                                                  abort=True)
    batch = first_batch(data + b"cut", topic="t", partition=0, aborted_transactions=[(7, 10)])
    assert (batch.records, batch.base_offset, batch.next_offset) == ([], 10, 13)


def test_without_the_aborted_list_a_transactional_batch_is_read_as_read_uncommitted_would():
    batch = first_batch(events_at([10], producer_id=7, transactional=True), topic="t", partition=0)
    assert [raw.record.offset for raw in batch.records] == [10]


@pytest.mark.parametrize("codec", [1, 2, 3, 4], ids=["gzip", "snappy", "lz4", "zstd"])
def test_a_record_that_inflates_past_the_bound_is_a_reference_and_its_neighbours_are_read(codec):
    bomb = b"\0" * (12 * 1024 * 1024)
    data = built_batch([(b"user-1", b'{"n":0}', []), (b"bomb-key", bomb, [("h", b"v")]), (None, b'{"n":2}', [])],
                       codec=codec)
    tracemalloc.start()
    try:
        batch = first_batch(data, topic="t", partition=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * 1024 * 1024, f"{peak} bytes held while reading a batch that inflates to 12 MiB"
    first, reference, last = batch.records
    assert (first.problem, last.problem, first.record.value, last.record.value) == (None, None, b'{"n":0}', b'{"n":2}')
    assert [raw.record.offset for raw in batch.records] == [40, 41, 42]
    assert "inflates past the 1048576-byte bound" in reference.problem
    assert reference.uninflated.size > len(bomb) and reference.uninflated.batch_bytes == len(data)
    assert reference.record.key == b"bomb-key" and reference.record.value == b"\0" * KEPT_PREFIX_BYTES
    assert reference.record.timestamp == 1_700_000_000_001


def test_a_record_whose_key_alone_passes_the_bound_is_a_reference_with_the_keys_first_bytes():
    data = built_batch([(b"k" * (2 * MAX_RECORD_BYTES), b"{}", [])], codec=4)
    [reference] = first_batch(data, topic="t", partition=0).records
    assert reference.uninflated is not None and reference.record.key == b"k" * KEPT_PREFIX_BYTES
