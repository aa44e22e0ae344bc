"""From Kafka records to stored activity logs: the consumer's stages, one function each.

    decode → build documents → bulk write → dead-letter the rejects → commit

`consuming.Ingestor.ingest` runs them in that order for every batch and states the delivery
guarantee they keep. Each stage here either returns its result or raises one of the failure types
of `failures` (Transient: retry the step; StopConsuming: stop); a single bad record is never
an exception, it is a `Rejected` value that ends on the dead-letter topic.
"""

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.structs import OffsetAndMetadata, TopicPartition
from pymongo import InsertOne
from pymongo.errors import BulkWriteError, PyMongoError

from ..events import ActivityEvent, InvalidEvent, bounded_reason
from ..storage.documents import DIGEST_FIELD, DUPLICATE_KEY, ActivityLog, content_digest
from . import dead_letter_headers as dlq
from .broker import refusal_advice, refuses_client
from .failures import TRANSIENT_SERVER_CODES, Rejected, StopConsuming, Transient, classify

log = logging.getLogger(__name__)

CONFLICTING_CONTENT = "eventId already stored with different content"
# When a dead-letter copy must be cut, what of the original record is kept besides its value's prefix.
MAX_KEPT_KEY_BYTES = 1024
MAX_KEPT_HEADER_BYTES = 16 * 1024


@dataclass
class BatchResult:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0

    def add(self, other):
        self.received += other.received
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered


@dataclass
class WriteOutcome:
    """What one bulk write did: new logs stored, exact replays skipped, and documents refused
    for good (index into the documents written, reason)."""

    stored: int = 0
    duplicates: int = 0
    refused: list = field(default_factory=list)


def decode_records(records, *, max_clock_skew_seconds):
    """Split records into (record, ActivityEvent) pairs and Rejected ones; never raises for a record.

    Each record is judged whole (`ActivityEvent.from_record`): its value, and its key and timestamp against it.
    """
    accepted, rejected = [], []
    from_record = ActivityEvent.from_record
    for record in records:
        try:
            accepted.append((record, from_record(record.value, key=record.key, timestamp_ms=record.timestamp,
                                                 max_clock_skew_seconds=max_clock_skew_seconds)))
        except InvalidEvent as exc:
            rejected.append(Rejected(record, exc.reason))
    return accepted, rejected


def build_documents(accepted, *, ingested_at=None):
    """One insert per event (`_id` = eventId, with its content digest) and the Kafka coordinates it came from."""
    ingested_at = ingested_at or datetime.now(timezone.utc)
    return [
        ActivityLog.mongo_document(event, partition=record.partition, offset=record.offset, ingested_at=ingested_at)
        for record, event in accepted
    ]


def write_documents(collection, documents):
    """Insert all documents in one unordered bulk write and sort out what the server refused.

    A duplicate `_id` is an event stored before: with the same content digest it is a replay
    (skipped quietly: that is the idempotency), with another digest the eventId was reused for
    different content and the newcomer is refused. A per-document error no retry can cure (the
    server's validation, a document too large) refuses that document with the server's reason;
    the rest of the batch is stored either way. Transient errors raise `Transient`, leaving the
    batch uncommitted: retrying it is safe, the documents already stored become replays.
    Inserting and skipping duplicates is faster than `$setOnInsert` upserts
    (docs/decisions/0002-insert-and-skip-not-upsert.md).
    """
    if not documents:
        return WriteOutcome()
    try:
        result = collection.bulk_write([InsertOne(document) for document in documents], ordered=False)
        return WriteOutcome(stored=result.inserted_count)
    except BulkWriteError as exc:
        details = exc.details
    except PyMongoError as exc:
        raise classify(exc, what="writing to MongoDB") from exc
    if details.get("writeConcernErrors"):
        first = details["writeConcernErrors"][0]
        raise Transient(f"writing to MongoDB: write concern not satisfied: code {first.get('code')}: "
                        f"{first.get('errmsg')}")
    errors = details.get("writeErrors", [])
    transient = [error for error in errors if error.get("code") in TRANSIENT_SERVER_CODES]
    if transient:
        raise Transient(f"writing to MongoDB: code {transient[0].get('code')}: {transient[0].get('errmsg')}")
    outcome = WriteOutcome(stored=details.get("nInserted", 0))
    duplicates = {error["index"] for error in errors if error.get("code") == DUPLICATE_KEY}
    for error in errors:
        if error["index"] not in duplicates:
            outcome.refused.append((error["index"], bounded_reason(
                f"refused by MongoDB: code {error.get('code')}: {error.get('errmsg')}")))
    conflicting = _conflicting(collection, {index: documents[index] for index in duplicates})
    for index in sorted(duplicates):
        if index in conflicting:
            outcome.refused.append((index, CONFLICTING_CONTENT))
        else:
            outcome.duplicates += 1
    return outcome


def _conflicting(collection, newcomers):
    """The indexes among `newcomers` ({index: document}) whose stored log has a different content digest."""
    if not newcomers:
        return set()
    try:
        stored = {document["_id"]: document for document in collection.find({"_id": {"$in": list({
            newcomer["_id"] for newcomer in newcomers.values()})}})}
    except PyMongoError as exc:
        raise classify(exc, what="reading the stored duplicates") from exc
    conflicting = set()
    for index, newcomer in newcomers.items():
        existing = stored.get(newcomer["_id"])
        if existing is None:
            continue  # deleted since the insert failed; the retry of a later batch is not ours to judge
        digest = existing.get(DIGEST_FIELD)
        if digest is None:  # stored before digests existed: derive it from the stored fields
            digest = content_digest(ActivityLog._from_son(existing).to_event())
        if bytes(digest) != bytes(newcomer[DIGEST_FIELD]):
            conflicting.add(index)
    return conflicting


def dead_letter_record(reject, *, group, max_bytes):
    """The dead-letter copy of a rejected record as (key, value, headers), at most `max_bytes`.

    The headers say why and where from; they replace any `dlq.*` headers the record arrived with,
    so a producer cannot forge a reason, except a well-formed re-drive count, carried over so that a
    record re-driven and rejected again counts towards `redrive_dead_letters --max-attempts`. When the
    original would not fit, its value is cut to a prefix (its key and headers too, if they are large)
    and headers give the original size and SHA-256; the whole original stays on the source topic at the
    coordinates given. A record too long to inflate (`reject.uninflated`) is sent by reference: its first
    bytes, its size and its batch's compressed size. Nulls are written as the copy's format says
    (`null_marked`).
    """
    record, uninflated = reject.record, reject.uninflated
    key, value = record.key, record.value
    original_headers = [(name, data) for name, data in (record.headers or []) if not dlq.is_dead_letter_header(name)]
    attempt = dlq.redrive_attempt(record.headers)
    own = [
        (dlq.REASON, bounded_reason(reject.reason).encode("utf-8")),
        (dlq.SOURCE_TOPIC, record.topic.encode("utf-8")),
        (dlq.SOURCE_PARTITION, str(record.partition).encode()),
        (dlq.SOURCE_OFFSET, str(record.offset).encode()),
        (dlq.CONSUMER_GROUP, group.encode("utf-8")),
        *([dlq.redrive_attempt_header(attempt)] if attempt is not None else []),
    ]
    if uninflated is None:
        copy = null_marked(key, value, original_headers, own)
        if DefaultRecordBatchBuilder.estimate_size_in_bytes(*copy) <= max_bytes:
            return copy
    if uninflated is not None:
        own += [(dlq.ORIGINAL_SIZE, str(uninflated.size).encode()),
                (dlq.ORIGINAL_BATCH_COMPRESSED_SIZE, str(uninflated.batch_bytes).encode())]
    else:
        own += [(dlq.ORIGINAL_SIZE, str(len(value or b"")).encode()),
                (dlq.ORIGINAL_SHA256, hashlib.sha256(value or b"").hexdigest().encode())]
    own.append((dlq.ORIGINAL_TRUNCATED, b"true"))
    if sum(len(name) + len(data or b"") for name, data in original_headers) > MAX_KEPT_HEADER_BYTES:
        original_headers = []
    key = key[:MAX_KEPT_KEY_BYTES] if key is not None else None
    key, value, headers = null_marked(key, value, original_headers, own)
    room = max_bytes - DefaultRecordBatchBuilder.estimate_size_in_bytes(key, b"", headers) - 16  # varint growth
    return key, value[:max(room, 0)], headers


def null_marked(key, value, original_headers, own):
    """(key, value, headers) of a copy in which no value is null (docs/operations.md "Dead letters").

    Kafka allows a record with a null key and a null value, and header values that are null; a producer
    refuses to send either. A null value becomes an empty one and so does a null header value, and the
    header `dlq.original.null` lists, comma-separated, what was null: `value`, and `header:<i>` for the
    i-th (0-based) of the original headers kept in the copy. A null key stays null.
    """
    nulls = [f"{dlq.NULL_HEADER_PREFIX}{index}" for index, (_, data) in enumerate(original_headers) if data is None]
    if value is None:
        nulls.insert(0, dlq.NULL_VALUE)
    headers = [(name, b"" if data is None else data) for name, data in original_headers] + own
    if nulls:
        headers.append((dlq.ORIGINAL_NULL, ",".join(nulls).encode()))
    return key, b"" if value is None else value, headers


def dead_letter(producer, topic, rejected, *, group, max_bytes):
    """Publish each reject's dead-letter copy and wait for every acknowledgement.

    A reject counts as handled only once it is on the topic; a retriable broker error raises
    `Transient`, any other (authorization, a record the broker still finds too large) `StopConsuming`.
    """
    try:
        futures = [producer.send(topic, key=key, value=value, headers=headers)
                   for key, value, headers in (dead_letter_record(reject, group=group, max_bytes=max_bytes)
                                               for reject in rejected)]
        producer.flush()
        for future in futures:
            future.get(timeout=0)  # raises the delivery error, if any
    except Exception as exc:
        what = f"publishing to the dead-letter topic {topic}"
        if refuses_client(producer, exc):
            raise StopConsuming(f"{what}: {refusal_advice(exc)}") from exc
        failure = classify(exc, what=what)
        if failure is None:
            raise
        raise failure from exc


def offsets_to_commit(records):
    """The next offset to read, per partition, after every record in the batch.

    The batch's highest offset per partition is found first, and only then is one commit entry built per
    partition: this runs once per batch over every record.
    """
    highest = {}
    for record in records:
        where = (record.topic, record.partition)
        if record.offset > highest.get(where, -1):
            highest[where] = record.offset
    return {TopicPartition(*where): OffsetAndMetadata(offset + 1, "", -1) for where, offset in highest.items()}
