"""The stored activity log: one MongoDB document per accepted event."""

import dataclasses

from bson import ObjectId
from mongoengine import DateTimeField, Document, IntField, LongField, StringField

from .events import ACTIONS, ActivityEvent

_EVENT_ATTRIBUTES = tuple(field.name for field in dataclasses.fields(ActivityEvent))


class ActivityLog(Document):
    """An accepted event. Field names match `ActivityEvent`; money is integer cents."""

    event_id = StringField(db_field="eventId", required=True, unique=True)
    user_id = StringField(db_field="userId", required=True)
    action = StringField(required=True, choices=ACTIONS)
    timestamp = DateTimeField(required=True)
    amount_cents = LongField(db_field="amountCents")
    currency = StringField()
    counterparty_id = StringField(db_field="counterpartyId")
    transfer_id = StringField(db_field="transferId")
    balance_cents = LongField(db_field="balanceCents")
    # Where the event was read from, so an operator can trace a log back to the topic.
    kafka_partition = IntField(db_field="kafkaPartition")
    kafka_offset = LongField(db_field="kafkaOffset")
    ingested_at = DateTimeField(db_field="ingestedAt")

    meta = {
        "collection": "activity_logs",
        # Indexes are created by `ensure_indexes()` at consumer start, not on first query.
        "auto_create_index": False,
        "indexes": [
            # Newest first everywhere; _id breaks timestamp ties so pages never overlap.
            {"fields": ["-timestamp", "-id"], "name": "newest_first"},
            {"fields": ["user_id", "-timestamp", "-id"], "name": "user_newest_first"},
            {"fields": ["action", "-timestamp", "-id"], "name": "action_newest_first"},
            {"fields": ["user_id", "action", "-timestamp", "-id"], "name": "user_action_newest_first"},
        ],
    }

    @classmethod
    def mongo_document(cls, event, *, partition=None, offset=None, ingested_at=None):
        """The raw BSON-ready dict for one event, built without a Document instance.

        Bulk ingestion inserts these through pymongo: constructing and validating a mongoengine
        Document per event costs more than the database write itself.
        """
        document = {"_id": ObjectId()}
        for attribute in _EVENT_ATTRIBUTES:
            value = getattr(event, attribute)
            if value is not None:
                document[cls._fields[attribute].db_field] = value
        document[cls._fields["kafka_partition"].db_field] = partition
        document[cls._fields["kafka_offset"].db_field] = offset
        document[cls._fields["ingested_at"].db_field] = ingested_at
        return document

    def to_event(self):
        return ActivityEvent(**{attribute: getattr(self, attribute) for attribute in _EVENT_ATTRIBUTES})
