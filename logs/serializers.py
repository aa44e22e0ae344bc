"""The API's view of a stored log (CONTRACT "API"): wire field names, money as decimal strings, UTC times."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .documents import ActivityLog
from .events import ACTIONS, format_timestamp
from .money import format_cents


def _stored(attribute):
    """Where `ActivityLog.<attribute>` lives in the stored BSON document (its db_field)."""
    return ActivityLog._fields[attribute].db_field


@extend_schema_field({"type": "string", "format": "decimal", "pattern": r"^-?\d+\.\d{2}$", "example": "12.50"})
class CentsField(serializers.Field):
    """Integer cents in the database, a two-decimal string on the wire; never a float."""

    def to_representation(self, value):
        return format_cents(value)


@extend_schema_field({"type": "string", "format": "date-time", "example": "2026-11-25T14:03:07.123Z"})
class TimestampField(serializers.Field):
    def to_representation(self, value):
        return format_timestamp(value)


class ActivityLogSerializer(serializers.Serializer):
    """Reads the stored document dicts from the selectors; fields that do not apply are null.

    Wire names equal the stored names (ActivityLog's db_field) except for `id` and `eventId` (both the
    document's `_id`, which is the eventId) and the money fields.
    """

    id = serializers.UUIDField(source="_id", read_only=True,
                               help_text="Document id: the event's eventId, the path of GET /user-logs/{id}.")
    eventId = serializers.UUIDField(source="_id", read_only=True, help_text="The event's idempotency key (equal to id).")
    userId = serializers.CharField(read_only=True)
    action = serializers.ChoiceField(choices=ACTIONS, read_only=True)
    amount = CentsField(source=_stored("amount_cents"), read_only=True, allow_null=True,
                        help_text="send/receive: the amount moved, e.g. \"12.50\".")
    currency = serializers.CharField(read_only=True, allow_null=True,
                                     help_text="send/receive: ISO 4217 code.")
    counterpartyId = serializers.CharField(read_only=True, allow_null=True,
                                           help_text="send/receive: the other user.")
    transferId = serializers.UUIDField(read_only=True, allow_null=True,
                                       help_text="send/receive: shared by a transfer's send and receive.")
    balance = CentsField(source=_stored("balance_cents"), read_only=True, allow_null=True,
                         help_text="balance_inquiry: the balance reported.")
    timestamp = TimestampField(read_only=True,
                               help_text="When the activity happened, ISO 8601 in UTC with milliseconds.")
