"""One Kafka record batch (message format v2) decoded from its bytes, for a batch kafka-python cannot decode.

kafka-python 3.0.12 decodes every header name as UTF-8 and fails the whole batch when one is not
(the protocol allows any bytes there, and other clients write them), so the batch's valid events
would never be read. This reads the batch with nothing assumed beyond the format: each record
becomes a kafka-python `ConsumerRecord` and, if one of its header names is not UTF-8 or its
structure is broken, the reason it cannot be an event. The batch's own integrity (its CRC-32C,
its length, its codec) is checked first; a batch that fails it is not decoded at all.
"""

import struct
from dataclasses import dataclass

from kafka.codec import gzip_decode, snappy_decode, zstd_decode
from kafka.consumer.fetcher import ConsumerRecord
from kafka.record.default_records import lz4_decode
from kafka.record.util import calc_crc32c, decode_varint

# baseOffset, batchLength, partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta,
# baseTimestamp, maxTimestamp, producerId, producerEpoch, baseSequence, recordCount
BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")
CRC_COVERS_FROM = 21  # the CRC-32C covers the batch from its attributes on
LENGTH_COUNTS_FROM = 12  # batchLength counts the bytes after itself
CODECS = {0: bytes, 1: gzip_decode, 2: snappy_decode, 3: lz4_decode, 4: zstd_decode}
LOG_APPEND_TIME, CONTROL_BATCH = 0x08, 0x20
SHOWN_NAME_BYTES = 64


class UnreadableBatch(Exception):
    """The batch itself is damaged or in a form this reader does not know; its records cannot be told apart."""


@dataclass(frozen=True)
class RawRecord:
    record: object  # a kafka-python ConsumerRecord (header names that are not UTF-8 left out)
    problem: str | None  # why it cannot be an event, when the record itself says so


@dataclass(frozen=True)
class RawBatch:
    base_offset: int
    next_offset: int  # the offset after the batch: where reading goes on
    records: list  # RawRecord, in offset order; empty for a control batch


def first_batch(data, *, topic, partition):
    """The first record batch in `data` (the records field of a fetch response)."""
    data = memoryview(data)
    if len(data) < BATCH_HEADER.size:
        raise UnreadableBatch(f"{len(data)} bytes: shorter than a batch header")
    (base_offset, length, leader_epoch, magic, crc, attributes, last_delta, base_timestamp, max_timestamp,
     _producer_id, _producer_epoch, _sequence, count) = BATCH_HEADER.unpack_from(data)
    end = LENGTH_COUNTS_FROM + length
    if magic != 2:
        raise UnreadableBatch(f"message format v{magic}; only v2 carries headers")
    if end > len(data) or end < BATCH_HEADER.size:
        raise UnreadableBatch(f"batch length {length} does not fit the {len(data)} bytes fetched")
    if calc_crc32c(data[CRC_COVERS_FROM:end]) != crc:
        raise UnreadableBatch("CRC-32C mismatch")
    next_offset = base_offset + last_delta + 1
    if attributes & CONTROL_BATCH:
        return RawBatch(base_offset, next_offset, [])
    codec = CODECS.get(attributes & 0x07)
    if codec is None:
        raise UnreadableBatch(f"unknown compression codec {attributes & 0x07}")
    try:
        body = memoryview(codec(bytes(data[BATCH_HEADER.size:end])))
    except Exception as exc:  # each codec library raises its own types
        raise UnreadableBatch(f"cannot decompress: {type(exc).__name__}: {exc}") from exc
    timestamp_type = 1 if attributes & LOG_APPEND_TIME else 0
    records, position = [], 0
    for _ in range(count):
        try:
            size, start = decode_varint(body, position)
        except IndexError as exc:
            raise UnreadableBatch(f"{len(records)} of {count} records, then the batch ends") from exc
        if size < 0 or start + size > len(body):
            raise UnreadableBatch(f"record {len(records)} of length {size} overruns the batch")
        position = start + size
        records.append(_record(body[start:position], topic=topic, partition=partition, leader_epoch=leader_epoch,
                               base_offset=base_offset, base_timestamp=base_timestamp, max_timestamp=max_timestamp,
                               timestamp_type=timestamp_type, index=len(records)))
    return RawBatch(base_offset, next_offset, records)


def _record(body, *, topic, partition, leader_epoch, base_offset, base_timestamp, max_timestamp, timestamp_type,
            index):
    """One record's bytes (after its length) as a RawRecord; a broken structure is a problem, not an error."""
    names_not_utf8 = []
    try:
        position = 1  # attributes: unused in v2
        timestamp_delta, position = decode_varint(body, position)
        offset_delta, position = decode_varint(body, position)
        key, position = _nullable_bytes(body, position)
        value, position = _nullable_bytes(body, position)
        count, position = decode_varint(body, position)
        headers = []
        for _ in range(max(count, 0)):
            name, position = _nullable_bytes(body, position)
            data, position = _nullable_bytes(body, position)
            try:
                headers.append((name.decode("utf-8"), data))
            except (UnicodeDecodeError, AttributeError):
                names_not_utf8.append(name)
        if count < 0 or position != len(body):
            raise ValueError(f"{count} headers, {len(body) - position} bytes left over")
    except (ValueError, IndexError) as exc:
        # The record's bytes as its value: the dead-letter copy keeps what there is to see.
        offset = base_offset + index
        return RawRecord(_consumer_record(topic, partition, leader_epoch, offset, base_timestamp, timestamp_type,
                                          None, bytes(body), []),
                         f"malformed record at index {index} of its batch: {exc}")
    timestamp = max_timestamp if timestamp_type else base_timestamp + timestamp_delta
    record = _consumer_record(topic, partition, leader_epoch, base_offset + offset_delta, timestamp, timestamp_type,
                              key, value, headers)
    if names_not_utf8:
        shown = ", ".join(repr(bytes(name or b"")[:SHOWN_NAME_BYTES]) for name in names_not_utf8)
        return RawRecord(record, f"header name not UTF-8: {shown} (left out of this copy)")
    return RawRecord(record, None)


def _nullable_bytes(body, position):
    size, position = decode_varint(body, position)
    if size < 0:
        return None, position
    if position + size > len(body):
        raise ValueError(f"a field of {size} bytes overruns the record")
    return bytes(body[position:position + size]), position + size


def _consumer_record(topic, partition, leader_epoch, offset, timestamp, timestamp_type, key, value, headers):
    return ConsumerRecord(topic, partition, leader_epoch, offset, timestamp, timestamp_type, key, value, headers,
                          None, len(key) if key is not None else -1, len(value) if value is not None else -1,
                          sum(len(name.encode()) + len(data or b"") for name, data in headers) if headers else -1)
