"""The activity event: its wire form (docs/contract.md "The event") and the one validator for it.

The generator builds `ActivityEvent`s and sends `to_bytes()`; the consumer accepts only what
`ActivityEvent.from_bytes` accepts; the tests use both. Nothing else defines the schema.
"""

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .currencies import ISO_4217_CODES
from .money import MAX_TRANSFER_CENTS, format_cents, parse_cents

SEND = "send"
RECEIVE = "receive"
BALANCE_INQUIRY = "balance_inquiry"
ACTIONS = (SEND, RECEIVE, BALANCE_INQUIRY)
TRANSFER_ACTIONS = frozenset({SEND, RECEIVE})

USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# RFC 3339's profile of ISO 8601, ASCII digits only: Python's fromisoformat alone would also take
# week dates, basic format, a space for the T, and offsets up to ±23:59.
_TIMESTAMP_PATTERN = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?P<zone>Z|[+-](?:0[0-9]|1[0-8]):[0-5][0-9])?)?"
)

# Every stored timestamp lies in this range (UTC, after the event's offset is applied). The bottom is
# the Unix epoch (no payment activity predates it; every platform's timestamp arithmetic holds it);
# the top leaves a day below datetime.max, so turning any stored value into any local time, or adding
# up to a day to it, cannot overflow. The API checks its from/to against the same range.
TIMESTAMP_MIN = datetime(1970, 1, 1, tzinfo=timezone.utc)
TIMESTAMP_MAX = datetime(9999, 12, 30, 23, 59, 59, 999000, tzinfo=timezone.utc)

# Bounds checked before the JSON parser sees a message. A valid event is about 350 bytes and one
# flat object holding only strings; the bounds are far above that and far below what could hurt.
MAX_EVENT_BYTES = 16 * 1024
MAX_CONTAINERS = 32  # objects and arrays in one message, which also bounds their nesting depth
MAX_NUMBER_CHARS = 40
# How much of an offending value a reason quotes, and how long a whole reason may be.
MAX_QUOTED_CHARS = 60
MAX_REASON_CHARS = 1000

_COMMON_FIELDS = ("eventId", "userId", "action", "timestamp")
_TRANSFER_FIELDS = ("amount", "currency", "counterpartyId", "transferId")
FIELDS_BY_ACTION = {
    SEND: _COMMON_FIELDS + _TRANSFER_FIELDS,
    RECEIVE: _COMMON_FIELDS + _TRANSFER_FIELDS,
    BALANCE_INQUIRY: _COMMON_FIELDS + ("balance",),
}
ALL_FIELDS = frozenset(field for fields in FIELDS_BY_ACTION.values() for field in fields)


def bounded_reason(text):
    """A reason that is at most MAX_REASON_CHARS long and encodes as UTF-8 (no lone surrogates)."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe if len(safe) <= MAX_REASON_CHARS else safe[:MAX_REASON_CHARS - 1] + "…"


def quoted(value):
    """`repr(value)` cut to MAX_QUOTED_CHARS, so a megabyte of garbage is not copied into a reason."""
    if isinstance(value, (dict, list)):
        text = f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    else:
        text = repr(value)
    return text if len(text) <= MAX_QUOTED_CHARS else text[:MAX_QUOTED_CHARS - 1] + "…"


class InvalidEvent(ValueError):
    """A message that is not a valid activity event; `reason` says why, for the dead-letter topic."""

    def __init__(self, reason):
        reason = bounded_reason(reason)
        super().__init__(reason)
        self.reason = reason


class JSONNumber:
    """A JSON number, kept as its text: no event field is a number, so it is only ever reported."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


class _Unparseable(Exception):
    """Raised from inside the JSON parser's hooks to stop it at the first refused token."""


def _number(text):
    if len(text) > MAX_NUMBER_CHARS:
        raise _Unparseable(f"a JSON number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    return JSONNumber(text)


def _constant(name):
    raise _Unparseable(f"{name} is not JSON")


def _object(pairs):
    data = {}
    for name, value in pairs:
        if name in data:
            raise _Unparseable(f"duplicate key {quoted(name)}")
        data[name] = value
    return data


def _containers(text):
    """Objects and arrays outside strings; only counted precisely when the cheap bound is exceeded."""
    if text.count("{") + text.count("[") <= MAX_CONTAINERS:
        return 0
    count, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            count += 1
    return count


def parse_json(raw):
    """The JSON value of `raw` (bytes), within the bounds above; raises InvalidEvent otherwise."""
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"too large: {len(raw)} bytes (an event is at most {MAX_EVENT_BYTES})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    if text.startswith("\ufeff"):
        raise InvalidEvent("not JSON: starts with a byte order mark")
    if (containers := _containers(text)) > MAX_CONTAINERS:
        raise InvalidEvent(f"not an event: {containers} JSON objects/arrays (at most {MAX_CONTAINERS})")
    try:
        return json.loads(text, parse_int=_number, parse_float=_number, parse_constant=_constant,
                          object_pairs_hook=_object)
    except _Unparseable as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None


def parse_uuid(value):
    if not isinstance(value, str):
        raise ValueError("must be a UUID string")
    canonical = value.lower() if value.isascii() else value
    if not _UUID_PATTERN.fullmatch(canonical):
        raise ValueError(f"{quoted(value)} is not a UUID in its canonical 8-4-4-4-12 form")
    return canonical


def parse_user_id(value):
    if not isinstance(value, str) or not USER_ID_PATTERN.fullmatch(value):
        raise ValueError("must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'")
    return value


def parse_action(value):
    if not isinstance(value, str) or value not in ACTIONS:
        raise ValueError(f"must be one of {', '.join(ACTIONS)}")
    return value


def parse_timestamp(value):
    """UTC, cut to the millisecond (what MongoDB stores), within TIMESTAMP_MIN..TIMESTAMP_MAX."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 string with a time zone")
    match = _TIMESTAMP_PATTERN.fullmatch(value) if value.isascii() else None
    if match is None:
        raise ValueError(f"{quoted(value)} is not an ISO 8601 date-time (YYYY-MM-DDTHH:MM:SS.sss with Z or ±HH:MM)")
    if match["zone"] is None:
        raise ValueError(f"{quoted(value)} has no time zone (add Z or an offset such as +00:00)")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{quoted(value)} is not an ISO 8601 date-time (no such day or time)") from None
    try:
        moment = parsed.astimezone(timezone.utc)
    except OverflowError:
        moment = None  # before year 1 or after 9999 once the offset is applied
    if moment is None or not TIMESTAMP_MIN <= moment <= TIMESTAMP_MAX:
        raise ValueError(f"{quoted(value)} is outside {format_timestamp(TIMESTAMP_MIN)} .. "
                         f"{format_timestamp(TIMESTAMP_MAX)} (UTC)")
    return moment - timedelta(microseconds=moment.microsecond % 1000)


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
        """Decode and validate one Kafka message value; raises InvalidEvent with every problem.

        Total: for any bytes it returns an event or raises InvalidEvent, never anything else
        (tests/test_event_fuzzing.py and `make fuzz` hold it to that).
        """
        if raw is None:
            raise InvalidEvent("empty message (null value)")
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogatepass")
        return cls.from_dict(parse_json(bytes(raw)))

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            kind = {list: "array", str: "string", JSONNumber: "number", bool: "boolean", type(None): "null"}
            raise InvalidEvent(f"must be a JSON object, not {kind.get(type(data), type(data).__name__)}")
        errors = []
        action = data.get("action") if isinstance(data.get("action"), str) else None
        expected = FIELDS_BY_ACTION.get(action, _COMMON_FIELDS)
        for name in expected:
            if name not in data:
                errors.append(f"{name}: required for action {action!r}" if action in ACTIONS
                              else f"{name}: required")
        for name in data:
            if name not in ALL_FIELDS:
                shown = name if len(name) <= MAX_QUOTED_CHARS else name[:MAX_QUOTED_CHARS] + "…"
                errors.append(f"{shown}: unknown field")
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
