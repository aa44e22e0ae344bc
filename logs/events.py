"""The activity event: its wire form (CONTRACT "The event") and the one validator for it.

The generator builds `ActivityEvent`s and sends `to_bytes()`; the consumer accepts only what
`ActivityEvent.from_bytes` accepts; the tests use both. Nothing else defines the schema.
"""

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from .currencies import ISO_4217_CODES
from .money import MAX_TRANSFER_CENTS, format_cents, parse_cents

SEND = "send"
RECEIVE = "receive"
BALANCE_INQUIRY = "balance_inquiry"
ACTIONS = (SEND, RECEIVE, BALANCE_INQUIRY)
TRANSFER_ACTIONS = frozenset({SEND, RECEIVE})

USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_COMMON_FIELDS = ("eventId", "userId", "action", "timestamp")
_TRANSFER_FIELDS = ("amount", "currency", "counterpartyId", "transferId")
FIELDS_BY_ACTION = {
    SEND: _COMMON_FIELDS + _TRANSFER_FIELDS,
    RECEIVE: _COMMON_FIELDS + _TRANSFER_FIELDS,
    BALANCE_INQUIRY: _COMMON_FIELDS + ("balance",),
}
ALL_FIELDS = frozenset(field for fields in FIELDS_BY_ACTION.values() for field in fields)


class InvalidEvent(ValueError):
    """A message that is not a valid activity event; `reason` says why, for the dead-letter topic."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def parse_uuid(value):
    if not isinstance(value, str):
        raise ValueError("must be a UUID string")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None
    if str(parsed) != value.lower():
        raise ValueError(f"{value!r} is not a UUID in its canonical 8-4-4-4-12 form")
    return str(parsed)


def parse_user_id(value):
    if not isinstance(value, str) or not USER_ID_PATTERN.fullmatch(value):
        raise ValueError("must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'")
    return value


def parse_action(value):
    if value not in ACTIONS:
        raise ValueError(f"must be one of {', '.join(ACTIONS)}")
    return value


def parse_timestamp(value):
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 string with a time zone")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"{value!r} has no time zone (add Z or an offset such as +00:00)")
    return parsed.astimezone(timezone.utc)


def format_timestamp(moment):
    """UTC, millisecond precision (what MongoDB stores), with a Z."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_amount(value):
    cents = parse_cents(value)
    if cents <= 0:
        raise ValueError("must be greater than 0")
    if cents > MAX_TRANSFER_CENTS:
        raise ValueError(f"must be at most {format_cents(MAX_TRANSFER_CENTS)}")
    return cents


def parse_currency(value):
    if not isinstance(value, str) or value not in ISO_4217_CODES:
        raise ValueError("must be an ISO 4217 currency code such as USD")
    return value


# wire field -> (attribute, parser)
_PARSERS = {
    "eventId": ("event_id", parse_uuid),
    "userId": ("user_id", parse_user_id),
    "action": ("action", parse_action),
    "timestamp": ("timestamp", parse_timestamp),
    "amount": ("amount_cents", parse_amount),
    "currency": ("currency", parse_currency),
    "counterpartyId": ("counterparty_id", parse_user_id),
    "transferId": ("transfer_id", parse_uuid),
    "balance": ("balance_cents", parse_cents),
}


@dataclass(frozen=True)
class ActivityEvent:
    event_id: str
    user_id: str
    action: str
    timestamp: datetime
    amount_cents: int | None = None
    currency: str | None = None
    counterparty_id: str | None = None
    transfer_id: str | None = None
    balance_cents: int | None = None

    @classmethod
    def from_bytes(cls, raw):
        """Decode and validate one Kafka message value; raises InvalidEvent with every problem."""
        try:
            data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        except UnicodeDecodeError as exc:
            raise InvalidEvent(f"not UTF-8: {exc}") from None
        except json.JSONDecodeError as exc:
            raise InvalidEvent(f"not JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise InvalidEvent(f"must be a JSON object, not {type(data).__name__}")
        errors = []
        action = data.get("action")
        expected = FIELDS_BY_ACTION.get(action, _COMMON_FIELDS)
        for name in expected:
            if name not in data:
                errors.append(f"{name}: required for action {action!r}" if action in ACTIONS
                              else f"{name}: required")
        for name in data:
            if name not in ALL_FIELDS:
                errors.append(f"{name}: unknown field")
            elif name not in expected and action in ACTIONS:
                errors.append(f"{name}: not allowed for action {action!r}")
        values = {}
        for name in expected:
            if name in data:
                attribute, parse = _PARSERS[name]
                try:
                    values[attribute] = parse(data[name])
                except ValueError as exc:
                    errors.append(f"{name}: {exc}")
        if values.get("counterparty_id") is not None and values.get("counterparty_id") == values.get("user_id"):
            errors.append("counterpartyId: must differ from userId")
        if errors:
            raise InvalidEvent("; ".join(errors))
        return cls(**values)

    def to_dict(self):
        """The wire form: only the fields that belong to the action."""
        wire = {
            "eventId": self.event_id,
            "userId": self.user_id,
            "action": self.action,
            "amount": format_cents(self.amount_cents),
            "currency": self.currency,
            "counterpartyId": self.counterparty_id,
            "transferId": self.transfer_id,
            "balance": format_cents(self.balance_cents),
            "timestamp": format_timestamp(self.timestamp),
        }
        return {name: wire[name] for name in FIELDS_BY_ACTION[self.action]}

    def to_bytes(self):
        return json.dumps(self.to_dict(), separators=(",", ":")).encode("utf-8")

    @property
    def key(self):
        """The Kafka message key: a user's events share a partition, so they stay in order."""
        return self.user_id.encode("utf-8")
