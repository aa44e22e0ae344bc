"""The stored activity log: one MongoDB document per accepted event, and the facts of its layout.

The current layout, the one place other code (the migration command, the startup check, the API, the
benchmarks) learns it from:

- collection `COLLECTION`;
- `_id` is the event's `eventId` as its canonical lowercase 8-4-4-4-12 string.
  A replay collides on `_id` (`DUPLICATE_KEY`), so no unique secondary index is needed and the
  collection can be sharded by user. String, not BSON UUID: it is what the API, the URLs and every
  driver shell show without a `uuidRepresentation` setting, and it inserted faster for a larger `_id`
  index (docs/decisions/0001-event-id-as-string-id.md);
- `DIGEST_FIELD`: BSON binary, the SHA-256 of the event's canonical wire bytes (`ActivityEvent.to_bytes`),
  compared on a duplicate `_id` to tell a replay from a reused eventId with other content;
- no `eventId` field: it is `_id`.

The previous layout: `_id` an ObjectId, the event id in field `eventId` (`LAYOUT_1_EVENT_ID_FIELD`) with a
unique index on it, no digest.
"""

import dataclasses
import hashlib

from mongoengine import BinaryField, DateTimeField, Document, IntField, LongField, StringField

from ..events import ACTIONS, ActivityEvent

COLLECTION = "activity_logs"
DIGEST_FIELD = "contentDigest"
LAYOUT_1_EVENT_ID_FIELD = "eventId"
# The server's error code for an insert whose `_id` is already stored: a replay, or a reused eventId.
DUPLICATE_KEY = 11000

_EVENT_ATTRIBUTES = tuple(field.name for field in dataclasses.fields(ActivityEvent))


def content_digest(event):
    """SHA-256 of the canonical wire form: equal for the same event however its producer spelled it.

    Plain bytes: pymongo writes them as BSON binary of subtype 0, exactly as it writes a `bson.Binary`,
    without that class's constructor, which ingestion would pay once per event.
    """
    return hashlib.sha256(event.to_bytes()).digest()


class ActivityLog(Document):
    """An accepted event. Field names match `ActivityEvent`; money is integer cents; `_id` is the eventId."""

    event_id = StringField(primary_key=True)
    user_id = StringField(db_field="userId", required=True)
    action = StringField(required=True, choices=ACTIONS)
    timestamp = DateTimeField(required=True)
    amount_cents = LongField(db_field="amountCents")
    currency = StringField()
    counterparty_id = StringField(db_field="counterpartyId")
    transfer_id = StringField(db_field="transferId")
    balance_cents = LongField(db_field="balanceCents")
    content_digest = BinaryField(db_field=DIGEST_FIELD)
    # Where the event was read from, so an operator can trace a log back to the topic.
    kafka_partition = IntField(db_field="kafkaPartition")
    kafka_offset = LongField(db_field="kafkaOffset")
    ingested_at = DateTimeField(db_field="ingestedAt")

    meta = {
        "collection": COLLECTION,
        # Indexes are created by `ensure_indexes()` at consumer start, not on first query.
        "auto_create_index": False,
        "indexes": [
            # Newest first everywhere; _id breaks timestamp ties so pages never overlap.
            {"fields": ["-timestamp", "-event_id"], "name": "newest_first"},
            {"fields": ["user_id", "-timestamp", "-event_id"], "name": "user_newest_first"},
            {"fields": ["action", "-timestamp", "-event_id"], "name": "action_newest_first"},
            {"fields": ["user_id", "action", "-timestamp", "-event_id"], "name": "user_action_newest_first"},
        ],
    }

    @classmethod
    def mongo_document(cls, event, *, partition=None, offset=None, ingested_at=None):
        """The raw BSON-ready dict for one event, built without a Document instance.

        Bulk ingestion inserts these through pymongo: constructing and validating a mongoengine
        Document per event costs more than the database write itself.
        """
        document = {field: value for attribute, field in _STORED_AS if (value := getattr(event, attribute)) is not None}
        document[DIGEST_FIELD] = content_digest(event)
        document[_PARTITION_FIELD] = partition
        document[_OFFSET_FIELD] = offset
        document[_INGESTED_AT_FIELD] = ingested_at
        return document

    def to_event(self):
        return ActivityEvent(**{attribute: getattr(self, attribute) for attribute in _EVENT_ATTRIBUTES})


# Looked up once: `mongo_document` runs once per event.
_STORED_AS = tuple((attribute, ActivityLog._fields[attribute].db_field) for attribute in _EVENT_ATTRIBUTES)
_PARTITION_FIELD, _OFFSET_FIELD, _INGESTED_AT_FIELD = (
    ActivityLog._fields[attribute].db_field for attribute in ("kafka_partition", "kafka_offset", "ingested_at"))
