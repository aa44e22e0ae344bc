"""The API's view of a stored log (docs/contract.md "API"): wire field names, money as decimal strings, UTC times."""

import functools

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..events import ACTIONS, format_timestamp
from ..money import format_cents
from ..storage.documents import ActivityLog


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


_ABSENT = object()


class ActivityLogSerializer(serializers.Serializer):
    """Reads the stored document dicts from the selectors; fields that do not apply are null.

    Wire names equal the stored names (ActivityLog's db_field) except for `id` and `eventId` (both the
    document's `_id`, which is the eventId) and the money fields.
    """

    id = serializers.UUIDField(source="_id", read_only=True,
                               help_text="Document id: the event's eventId, the path of GET /user-logs/{id}.")
    eventId = serializers.UUIDField(source="_id", read_only=True,
                                    help_text="The event's idempotency key (equal to id).")
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

    @classmethod
    @functools.cache
    def conversions(cls):
        """(wire name, stored key, the field's to_representation, allow_null, whether it gives back a string as it
        is) per field, from fields bound once."""
        fields = cls().fields
        assert all(len(field.source_attrs) == 1 and field.read_only for field in fields.values()), \
            "to_representation below reads one stored key per field"
        return tuple((name, field.source, field.to_representation, field.allow_null, _keeps_strings(field))
                     for name, field in fields.items())

    def to_representation(self, stored):
        """DRF's `Serializer.to_representation` of a stored dict, with the fields bound once per class.

        DRF deep-copies and binds every declared field for each serializer it builds, then resolves each
        field's source per row, which costs more than the rest of serializing a page. These fields are
        read-only, read one stored key each and use no context,
        so one bound set serves every request. As DRF does, an absent key is null when the field allows
        null and left out otherwise; tests/test_api.py compares the two on every kind of log.
        """
        representation = {}
        for name, source, convert, allow_null, keeps_strings in self.conversions():
            value = stored.get(source, _ABSENT)
            if value is _ABSENT:
                if allow_null:
                    representation[name] = None
            elif value is None or (keeps_strings and type(value) is str):
                representation[name] = value
            else:
                representation[name] = convert(value)
        return representation


def _keeps_strings(field):
    """Whether the field's to_representation gives back every `str` unchanged, so a stored string need not pass
    through it: `str(value)` (CharField, a UUIDField in its default format), or a ChoiceField whose every
    choice is its own label's key."""
    if isinstance(field, serializers.ChoiceField):
        return all(key == value for key, value in field.choice_strings_to_values.items())
    if isinstance(field, serializers.UUIDField):
        return field.uuid_format == "hex_verbose"
    return type(field) is serializers.CharField
