"""Kafka's compression codecs, inflated a piece at a time, so that no batch is ever held whole unasked.

A record batch names its codec (gzip, snappy, lz4, zstd) and carries its records compressed; what they
inflate to is known only by inflating them, and a few kilobytes on the wire can inflate to gigabytes
(docs/decisions/0018-bounded-inflation.md). `inflating` yields the inflated bytes in pieces of at most
`CHUNK_BYTES` from each codec library's own streaming decompressor; `inflate` gathers them up to a
limit and raises `InflatesPastLimit` the moment one byte more would come.
"""

import io
import struct
import zlib

import lz4.frame
import snappy
import zstandard

NONE, GZIP, SNAPPY, LZ4, ZSTD = range(5)
NAMES = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}
CHUNK_BYTES = 1024 * 1024
# The framing the Java client's snappy (xerial snappy-java) writes, and kafka-python too: a header,
# then blocks of [4-byte length][raw snappy block], each inflating to a few tens of kilobytes.
XERIAL_MAGIC = b"\x82SNAPPY\x00"
XERIAL_HEADER_BYTES = 16
# A raw snappy block says what it inflates to and can only be inflated whole; one that says more than
# this is refused rather than inflated (the Java client's blocks are 32 KiB).
MAX_SNAPPY_BLOCK_BYTES = 16 * 1024 * 1024


class InflatesPastLimit(Exception):
    """The payload inflates past the limit it was given; nothing past the limit was inflated."""

    def __init__(self, limit):
        super().__init__(f"inflates past {limit} bytes")
        self.limit = limit


class CannotInflate(ValueError):
    """The payload is not what its codec writes."""


def inflating(codec, payload):
    """The payload inflated, as an iterator of byte strings of at most CHUNK_BYTES (snappy: one block each)."""
    if codec == NONE:
        return iter((bytes(payload),))
    try:
        return _INFLATERS[codec](payload)
    except KeyError:
        raise CannotInflate(f"unknown compression codec {codec}") from None


def inflate(codec, payload, *, limit):
    """The payload inflated whole, or InflatesPastLimit once it would be longer than `limit` bytes."""
    pieces, size = [], 0
    for piece in inflating(codec, payload):
        size += len(piece)
        if size > limit:
            raise InflatesPastLimit(limit)
        pieces.append(piece)
    return b"".join(pieces)


def _gzip(payload):
    rest = bytes(payload)
    while rest:  # a gzip stream may hold several members, one after another
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pending = rest
        while not inflater.eof:
            try:
                piece = inflater.decompress(pending, CHUNK_BYTES)
            except zlib.error as exc:
                raise CannotInflate(f"gzip: {exc}") from None
            pending = inflater.unconsumed_tail
            if piece:
                yield piece
            elif not pending:
                raise CannotInflate("gzip: the stream ends inside a member")
        rest = inflater.unused_data


def _snappy(payload):
    payload = bytes(payload)
    if not payload.startswith(XERIAL_MAGIC):
        yield _snappy_block(payload)
        return
    position = XERIAL_HEADER_BYTES
    while position < len(payload):
        if position + 4 > len(payload):
            raise CannotInflate("snappy: a block length is cut off")
        (length,) = struct.unpack_from(">i", payload, position)
        position += 4
        if length < 0 or position + length > len(payload):
            raise CannotInflate(f"snappy: a block of {length} bytes overruns the payload")
        yield _snappy_block(payload[position:position + length])
        position += length


def _snappy_block(block):
    """One raw snappy block, inflated after checking the length it declares (a varint at its start)."""
    declared, shift = 0, 0
    for index, byte in enumerate(block[:5]):
        declared |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    else:
        raise CannotInflate("snappy: a block without its length")
    if index == 4 and declared >= 1 << 32:
        raise CannotInflate("snappy: a block length out of range")
    if declared > MAX_SNAPPY_BLOCK_BYTES:
        raise CannotInflate(f"snappy: a block says it inflates to {declared} bytes (at most "
                            f"{MAX_SNAPPY_BLOCK_BYTES} are read)")
    try:
        return snappy.decompress(block)
    except Exception as exc:  # python-snappy raises its own and cramjam's types
        raise CannotInflate(f"snappy: {type(exc).__name__}: {exc}") from None


def _lz4(payload):
    inflater = lz4.frame.LZ4FrameDecompressor()
    pending = bytes(payload)
    while not inflater.eof:
        try:
            piece = inflater.decompress(pending, max_length=CHUNK_BYTES)
        except RuntimeError as exc:  # what lz4.frame raises for a damaged frame
            raise CannotInflate(f"lz4: {exc}") from None
        if piece:
            yield piece
        elif not pending and not inflater.eof:  # nothing more in, nothing out: the frame is cut short
            raise CannotInflate("lz4: the frame ends early")
        pending = b""  # the decompressor keeps what it has not inflated yet
    if inflater.unused_data:
        raise CannotInflate(f"lz4: {len(inflater.unused_data)} bytes after the frame")


def _zstd(payload):
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(bytes(payload)), read_across_frames=True)
    with reader:
        while True:
            try:
                piece = reader.read(CHUNK_BYTES)
            except zstandard.ZstdError as exc:
                raise CannotInflate(f"zstd: {exc}") from None
            if not piece:
                return
            yield piece


_INFLATERS = {GZIP: _gzip, SNAPPY: _snappy, LZ4: _lz4, ZSTD: _zstd}
