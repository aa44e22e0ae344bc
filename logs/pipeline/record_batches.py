"""Kafka record batches (message format v2) read from their bytes, for the batches kafka-python does not read.

Two kinds come here (the consumer's `StuckPartitions` fetches them raw): a batch kafka-python 3.0.12 fails
whole because one header name is not UTF-8 (the protocol allows any bytes there, and other clients write
them), and a compressed batch that would inflate past the bound kafka-python is held to
(`kafka_internals.bound_batch_inflation`: a decompression bomb). Nothing is assumed beyond the format:

- the batches are read as a read_committed consumer reads them (Kafka's rule, as its Java consumer applies
  it): a batch of a transaction the fetch answer lists as aborted is passed over, and so is every control
  batch (the commit and abort markers), which is never an event;
- a compressed batch is inflated a piece at a time (`compression.inflating`) and each record read off the
  stream, so that a record longer than `max_record_bytes` is never held: it is passed over and stands as a
  reference (its coordinates, its size, its batch's compressed size, its first bytes), dead-lettered as such;
- each record becomes a kafka-python `ConsumerRecord` and, if one of its header names is not UTF-8 or its
  structure is broken, the reason it cannot be an event.

The batch's own integrity (its CRC-32C, its length, its codec) is checked first; a batch that fails it is not
decoded at all.
"""

import struct
from dataclasses import dataclass

from kafka.consumer.fetcher import ConsumerRecord
from kafka.record.util import calc_crc32c, decode_varint

from . import compression

# baseOffset, batchLength, partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta,
# baseTimestamp, maxTimestamp, producerId, producerEpoch, baseSequence, recordCount
BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")
CRC_COVERS_FROM = 21  # the CRC-32C covers the batch from its attributes on
LENGTH_COUNTS_FROM = 12  # batchLength counts the bytes after itself
LOG_APPEND_TIME, TRANSACTIONAL, CONTROL_BATCH = 0x08, 0x10, 0x20
CODEC_MASK = 0x07
# A control record's key: version (int16), type (int16); type 0 marks an abort, 1 a commit.
CONTROL_KEY = struct.Struct(">hh")
ABORT_MARKER = 0
SHOWN_NAME_BYTES = 64
# Of a record too long to hold, the leading bytes read to find its coordinates, key and value,
# and how much of its key and of its value the reference keeps.
PEEK_BYTES = 4096
KEPT_PREFIX_BYTES = 1024


class UnreadableBatch(Exception):
    """The batch itself is damaged or in a form this reader does not know; its records cannot be told apart."""


@dataclass(frozen=True)
class Uninflated:
    """A record passed over without being inflated whole: what is known of it without holding it."""

    size: int  # its length, key, value and headers, as it declares it
    batch_bytes: int  # the compressed length of the batch it came in (a record's own share is not known)


@dataclass(frozen=True)
class RawRecord:
    record: object  # a kafka-python ConsumerRecord (header names that are not UTF-8 left out)
    problem: str | None  # why it cannot be an event, when the record itself says so
    uninflated: Uninflated | None = None  # set when the record holds only the first bytes of key and value


@dataclass(frozen=True)
class RawBatch:
    base_offset: int
    next_offset: int  # the offset after the batch (and after any batch passed over before it): where reading goes on
    records: list  # RawRecord, in offset order; empty when every batch read was passed over


def read_batch(data, *, topic, partition, max_record_bytes, aborted_transactions=()):
    """The first batch in `data` (the records field of a fetch answer) that a read_committed consumer takes
    records from, passing over the control batches and aborted transactions' batches before it.

    `aborted_transactions` is the fetch answer's list of (producer id, first offset). When `data` holds
    only batches passed over, the RawBatch has no records and its next_offset is past them.
    """
    data = memoryview(data)
    aborted = sorted(aborted_transactions, key=lambda transaction: transaction[1])
    aborting = set()  # producers whose open transaction is aborted further on
    position, passed_over = 0, None
    while True:
        try:
            header, end = _checked_batch(data, position)
        except UnreadableBatch:
            if passed_over is None:
                raise
            return RawBatch(passed_over[0], passed_over[1], [])  # the next fetch starts after what was passed over
        (base_offset, _length, leader_epoch, _magic, _crc, attributes, last_delta, base_timestamp, max_timestamp,
         producer_id, _epoch, _sequence, count) = header
        next_offset = base_offset + last_delta + 1
        control = bool(attributes & CONTROL_BATCH)
        skip = control
        if producer_id >= 0:
            while aborted and aborted[0][1] <= next_offset - 1:
                aborting.add(aborted.pop(0)[0])
            if control and _is_abort_marker(data[position + BATCH_HEADER.size:end]):
                aborting.discard(producer_id)
            elif attributes & TRANSACTIONAL and producer_id in aborting:
                skip = True
        if not skip:
            records = _records(data[position:end], topic=topic, partition=partition, leader_epoch=leader_epoch,
                               base_offset=base_offset, base_timestamp=base_timestamp, max_timestamp=max_timestamp,
                               attributes=attributes, count=count, max_record_bytes=max_record_bytes)
            return RawBatch(base_offset, next_offset, records)
        passed_over = (base_offset if passed_over is None else passed_over[0], next_offset)
        position = end


def _checked_batch(data, position):
    """The header of the batch at `position` and where it ends, once its length, format and CRC are checked."""
    available = len(data) - position
    if available < BATCH_HEADER.size:
        raise UnreadableBatch(f"{available} bytes: shorter than a batch header")
    header = BATCH_HEADER.unpack_from(data, position)
    length, magic, crc = header[1], header[3], header[4]
    end = position + LENGTH_COUNTS_FROM + length
    if magic != 2:
        raise UnreadableBatch(f"message format v{magic}; only v2 carries headers")
    if end > len(data) or end < position + BATCH_HEADER.size:
        raise UnreadableBatch(f"batch length {length} does not fit the {available} bytes fetched")
    if calc_crc32c(data[position + CRC_COVERS_FROM:end]) != crc:
        raise UnreadableBatch("CRC-32C mismatch")
    return header, end


def _is_abort_marker(body):
    """True when a control batch's (uncompressed) records start with an abort marker."""
    try:
        _, position = decode_varint(body, 0)  # the record's length
        position += 1  # attributes
        _, position = decode_varint(body, position)  # timestamp delta
        _, position = decode_varint(body, position)  # offset delta
        key_size, position = decode_varint(body, position)
        if key_size < CONTROL_KEY.size:
            return False
        return CONTROL_KEY.unpack_from(body, position)[1] == ABORT_MARKER
    except (IndexError, ValueError, struct.error):
        return False


def _records(batch, *, topic, partition, leader_epoch, base_offset, base_timestamp, max_timestamp, attributes,
             count, max_record_bytes):
    """The batch's records, read one at a time off its inflating body."""
    codec = attributes & CODEC_MASK
    if codec not in compression.NAMES:
        raise UnreadableBatch(f"unknown compression codec {codec}")
    body = _Stream(compression.inflating(codec, batch[BATCH_HEADER.size:]))
    timestamp_type = 1 if attributes & LOG_APPEND_TIME else 0
    context = {"topic": topic, "partition": partition, "leader_epoch": leader_epoch, "base_offset": base_offset,
               "base_timestamp": base_timestamp, "max_timestamp": max_timestamp, "timestamp_type": timestamp_type}
    records = []
    try:
        for index in range(count):
            size = body.varint()
            if size < 0:
                raise UnreadableBatch(f"record {index} of length {size} overruns the batch")
            if size <= max_record_bytes:
                records.append(_record(body.read(size), index=index, **context))
            else:
                peeked = body.read(min(size, PEEK_BYTES))
                body.skip(size - len(peeked))
                records.append(_reference(peeked, size=size, index=index, batch_bytes=len(batch),
                                          bound=max_record_bytes, **context))
    except _Ended:
        raise UnreadableBatch(f"{len(records)} of {count} records, then the batch ends") from None
    except compression.CannotInflate as exc:
        raise UnreadableBatch(f"cannot decompress: {exc}") from None
    return records


class _Ended(Exception):
    """The inflated body ended inside a record."""


class _Stream:
    """The pieces of an inflating body read as one byte string, holding no more than a piece and what is being read."""

    def __init__(self, pieces):
        self._pieces = pieces
        self._buffer = b""
        self._position = 0

    def _fill(self, size):
        """At least `size` bytes ahead in the buffer, or _Ended."""
        while len(self._buffer) - self._position < size:
            piece = next(self._pieces, None)
            if piece is None:
                raise _Ended
            self._buffer = self._buffer[self._position:] + piece
            self._position = 0

    def varint(self):
        """A zigzag varint (what record lengths are)."""
        raw, shift = 0, 0
        for _ in range(10):
            self._fill(1)
            byte = self._buffer[self._position]
            self._position += 1
            raw |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (raw >> 1) ^ -(raw & 1)
            shift += 7
        raise compression.CannotInflate("a varint longer than 10 bytes")

    def read(self, size):
        self._fill(size)
        start, self._position = self._position, self._position + size
        return self._buffer[start:self._position]

    def skip(self, size):
        while size > 0:
            held = len(self._buffer) - self._position
            if held >= size:
                self._position += size
                return
            size -= held
            self._buffer, self._position = b"", 0
            self._fill(1)


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


def _reference(peeked, *, size, index, batch_bytes, bound, topic, partition, leader_epoch, base_offset,
               base_timestamp, max_timestamp, timestamp_type):
    """A record of `size` bytes, too long to hold, as a RawRecord holding the first bytes of its key and value
    (from `peeked`, its leading bytes) and no headers."""
    offset, timestamp, key, value = base_offset + index, base_timestamp, None, b""
    try:
        timestamp_delta, position = decode_varint(peeked, 1)
        offset_delta, position = decode_varint(peeked, position)
        offset = base_offset + offset_delta
        timestamp = max_timestamp if timestamp_type else base_timestamp + timestamp_delta
        key_size, position = decode_varint(peeked, position)
        key = None if key_size < 0 else bytes(peeked[position:position + min(key_size, KEPT_PREFIX_BYTES)])
        position += max(key_size, 0)
        value_size, position = decode_varint(peeked, position)
        value = bytes(peeked[position:position + min(max(value_size, 0), KEPT_PREFIX_BYTES)])
    except (IndexError, ValueError):
        pass  # the key runs past the bytes peeked at (or the record is broken): the reference keeps what was found
    record = _consumer_record(topic, partition, leader_epoch, offset, timestamp, timestamp_type, key, value, [])
    return RawRecord(record, f"record of {size} bytes inflates past the {bound}-byte bound (KAFKA_MAX_RECORD_BYTES): "
                             "left compressed, dead-lettered by reference", Uninflated(size, batch_bytes))


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
