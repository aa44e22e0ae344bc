"""Valid test data: events as the producer sends them, logs as ingestion stores them, and the consumer's
`Pipeline` around a test's own clients."""

import uuid
from datetime import datetime, timezone

from logs.events import SEND, TRANSFER_ACTIONS, ActivityEvent
from logs.storage.documents import ActivityLog

START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def activity_event(*, user_id="user-1", action=SEND, at=START, cents=1250):
    """A valid event; transfers carry amount/currency/counterparty/transfer id, inquiries a balance."""
    if action in TRANSFER_ACTIONS:
        details = {"amount_cents": cents, "currency": "USD", "counterparty_id": "user-99",
                   "transfer_id": str(uuid.uuid4())}
    else:
        details = {"balance_cents": cents}
    return ActivityEvent(event_id=str(uuid.uuid4()), user_id=user_id, action=action, timestamp=at, **details)


def valid_event(user="user-1"):
    """A balance inquiry of `user`, read from its wire form as the consumer reads it."""
    return ActivityEvent.from_dict({"eventId": str(uuid.uuid4()), "userId": user, "action": "balance_inquiry",
                                    "balance": "10.00", "timestamp": "2026-11-25T12:00:00Z"})


def stored_log(**event):
    """An `activity_event(**event)` as ingestion stores it (a document, not yet inserted)."""
    return ActivityLog.mongo_document(activity_event(**event))


def store(collection, events):
    """Insert through the database the way ingestion stores events; returns the stored documents."""
    documents = [ActivityLog.mongo_document(event) for event in events]
    collection.insert_many(documents)
    return documents


def pipeline(consumer, *, topic="activity", collection=None, group="group", open_reader=None, dlq_max_bytes=1 << 20):
    """The consumer's `Pipeline` over `consumer` and `collection`, reading `topic` (dead letters to `<topic>.dlq`,
    with no producer for them), with the default clock skew and record size limits."""
    from logs.pipeline.consuming import Pipeline

    return Pipeline(consumer=consumer, collection=collection, dlq_producer=None, topic=topic,
                    dlq_topic=f"{topic}.dlq", group=group, dlq_max_bytes=dlq_max_bytes, open_reader=open_reader,
                    max_clock_skew_seconds=300, max_record_bytes=1 << 20)
