"""The activity event: its wire form (docs/contract.md "The event") and the one validator for it.

The generator builds `ActivityEvent`s and sends `to_bytes()`; the consumer accepts only what
`ActivityEvent.from_record` accepts (the value as `from_bytes` reads it, then the rules that need the
Kafka record: its key and its timestamp); the tests use the same. Nothing else defines the schema.
"""

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson

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
# The form `format_timestamp` writes (UTC, milliseconds, Z): what every producer of ours sends, read
# without the general path's conversions.
_CANONICAL_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")

# A money amount as `format_cents` writes it: no leading zero, exactly two decimals, at most 15 whole digits
# (parse_cents' bound).
_CANONICAL_CENTS = r"(?:0|[1-9][0-9]{0,14})\.[0-9]{2}"

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


def _flat_object(raw):
    """The object `raw` holds when it is one JSON object of string members with distinct names, else None.

    The fast path for what every valid event is, through orjson; anything else (a duplicate name,
    which orjson would resolve silently, numbers, nesting, escapes, a leading byte order mark) is left
    to `parse_json_exactly`, which alone decides a rejection and its reason. With no backslash
    in the text every quote delimits a string, and a flat object of n string members has exactly 4n
    quotes: one member more (a duplicate) or any other string adds to the count.
    """
    if raw[:1] != b"{" or b"\\" in raw:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if raw.count(b'"') != 4 * len(data):
        return None
    for value in data.values():
        if type(value) is not str:
            return None
    return data


def parse_json(raw):
    """The JSON value of `raw` (bytes), within the bounds above; raises InvalidEvent otherwise."""
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"too large: {len(raw)} bytes (an event is at most {MAX_EVENT_BYTES})")
    if (data := _flat_object(raw)) is not None:
        return data
    return parse_json_exactly(raw)


def parse_json_exactly(raw):
    """`parse_json` without the fast path: the parser that decides every rejection and its reason."""
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
    if _CANONICAL_TIMESTAMP.fullmatch(value):
        try:
            moment = datetime.fromisoformat(value)  # already UTC and whole milliseconds
        except ValueError:
            moment = None  # no such day or time: the general path below says so
        if moment is not None and TIMESTAMP_MIN <= moment <= TIMESTAMP_MAX:
            return moment
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
    if moment.tzinfo is not timezone.utc:
        moment = moment.astimezone(timezone.utc)
    # %-formatting: the cheapest spelling CPython has (isoformat with timespec costs about twice as much).
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (moment.year, moment.month, moment.day, moment.hour,
                                                    moment.minute, moment.second, moment.microsecond // 1000)


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
# action -> (its fields as a set, [(wire field, attribute, parser)]): `from_dict`'s path for an event
# that has exactly its action's fields.
_SHAPES = {action: (frozenset(fields), [(name, *_PARSERS[name]) for name in fields])
           for action, fields in FIELDS_BY_ACTION.items()}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)

# The canonical wire form (`to_bytes`) of each action's events, as one pattern over the whole message: its
# fields in FIELDS_BY_ACTION's order, compact, every value in the one spelling `to_dict` writes, each one a
# capture group. No value pattern admits a quote, a backslash or a non-ASCII character, so a match is
# also the JSON text orjson writes for those values. `_from_canonical` reads what every producer of ours
# sends with one match instead of a JSON parse and a parser per field, and knows the message is already
# its own canonical bytes; anything else, and any match whose values a rule refuses, takes the general path.
_CANONICAL_VALUES = {
    "eventId": _UUID_PATTERN.pattern,
    "userId": USER_ID_PATTERN.pattern,
    "timestamp": _CANONICAL_TIMESTAMP.pattern,
    "amount": _CANONICAL_CENTS,
    "currency": "[A-Z]{3}",
    "counterpartyId": USER_ID_PATTERN.pattern,
    "transferId": _UUID_PATTERN.pattern,
    "balance": _CANONICAL_CENTS,
}
_CANONICAL_EVENTS = [
    (action, re.compile("{" + ",".join(
        f'"{name}":"{re.escape(action)}"' if name == "action" else f'"{name}":"({_CANONICAL_VALUES[name]})"'
        for name in fields) + "}"))
    for action, fields in FIELDS_BY_ACTION.items()
]
# The pattern to try, by the first letter of the action's value: the canonical form names its action third, after
# two values that cannot hold a quote, so the first `"action":"` of such a message is its own, and one match is
# tried instead of one per action.
_ACTION_AT = '"action":"'
_CANONICAL_BY_INITIAL = {action[0]: (action, pattern) for action, pattern in _CANONICAL_EVENTS}


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
        raw = bytes(raw)
        if (event := cls._from_canonical(raw)) is not None:
            return event
        return cls.from_dict(parse_json(raw))

    @classmethod
    def _from_canonical(cls, raw):
        """The event `raw` is the canonical wire form of (`_CANONICAL_EVENTS`), with `raw` kept as its
        `to_bytes()`; None for any other message, and for one whose values a rule refuses (a day that does not
        exist, a time out of range, an amount out of bounds, an unknown currency, a user paying themselves), which
        the general path then rejects with its reason."""
        if not raw.isascii():
            return None
        text = raw.decode("ascii")
        at = text.find(_ACTION_AT) + len(_ACTION_AT)
        action, pattern = _CANONICAL_BY_INITIAL.get(text[at:at + 1], (None, None))
        if pattern is None or (match := pattern.fullmatch(text)) is None:
            return None
        if action in TRANSFER_ACTIONS:
            event_id, user_id, timestamp, amount, currency, counterparty_id, transfer_id = match.groups()
            amount_cents, balance_cents = int(amount.replace(".", "")), None
            if (not 0 < amount_cents <= MAX_TRANSFER_CENTS or currency not in ISO_4217_CODES
                    or counterparty_id == user_id):
                return None
        else:
            event_id, user_id, timestamp, balance = match.groups()
            amount_cents = currency = counterparty_id = transfer_id = None
            balance_cents = int(balance.replace(".", ""))
        try:
            moment = datetime.fromisoformat(timestamp)
        except ValueError:
            return None
        if not TIMESTAMP_MIN <= moment <= TIMESTAMP_MAX:
            return None
        # Every value is checked: the instance is filled as copy and pickle fill one, without the frozen
        # dataclass's __init__, which sets each field through object.__setattr__ (the general path's cost).
        # The wire bytes ride along in the same __dict__, as functools.cached_property keeps its value.
        event = object.__new__(cls)
        event.__dict__.update(event_id=event_id, user_id=user_id, action=action, timestamp=moment,
                              amount_cents=amount_cents, currency=currency, counterparty_id=counterparty_id,
                              transfer_id=transfer_id, balance_cents=balance_cents, _wire=raw)
        return event

    @classmethod
    def from_record(cls, value, *, key, timestamp_ms, max_clock_skew_seconds):
        """Decode and validate one Kafka record: its value as `from_bytes` does, then the rules that need the
        record (docs/contract.md "The event"); raises InvalidEvent with every problem.

        A present key must be the event's userId: per-user ordering rests on the key, and an event keyed
        to another user may sit on another partition than its user's other events. A null key is allowed.
        The event may not be dated later than its record's timestamp plus `max_clock_skew_seconds` (the
        producer's clock or, on a LogAppendTime topic, the broker's): an event from the future would stay
        at the top of its user's newest-first history.
        """
        event = cls.from_bytes(value)
        errors = []
        if key is not None and key != event.key:
            errors.append(f"key does not match userId: key {quoted(bytes(key))}, userId {quoted(event.user_id)}")
        if timestamp_ms is None or timestamp_ms < 0:
            errors.append("timestamp: its Kafka record has no timestamp to check it against")
        elif (event.timestamp - _EPOCH) // _MILLISECOND > timestamp_ms + max_clock_skew_seconds * 1000:
            errors.append(f"timestamp in the future: {format_timestamp(event.timestamp)} is more than "
                          f"{max_clock_skew_seconds} s after its Kafka record's timestamp "
                          f"{format_timestamp(_EPOCH + timestamp_ms * _MILLISECOND)}")
        if errors:
            raise InvalidEvent("; ".join(errors))
        return event

    @classmethod
    def from_dict(cls, data):
        shape = _SHAPES.get(data.get("action")) if type(data) is dict and type(data.get("action")) is str else None
        if shape is not None and data.keys() == shape[0]:
            try:
                values = {attribute: parse(data[name]) for name, attribute, parse in shape[1]}
            except ValueError:
                pass  # the general path below lists every problem
            else:
                if values.get("counterparty_id") is None or values["counterparty_id"] != values["user_id"]:
                    return cls(**values)
        return cls._from_any(data)

    @classmethod
    def _from_any(cls, data):
        """`from_dict` for any JSON value: the event, or InvalidEvent naming every problem."""
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
        """The wire form: only the fields that belong to the action, in FIELDS_BY_ACTION's order."""
        if self.action in TRANSFER_ACTIONS:
            return {"eventId": self.event_id, "userId": self.user_id, "action": self.action,
                    "timestamp": format_timestamp(self.timestamp), "amount": format_cents(self.amount_cents),
                    "currency": self.currency, "counterpartyId": self.counterparty_id, "transferId": self.transfer_id}
        return {"eventId": self.event_id, "userId": self.user_id, "action": self.action,
                "timestamp": format_timestamp(self.timestamp), "balance": format_cents(self.balance_cents)}

    def to_bytes(self):
        """The canonical wire bytes: compact JSON in the schema's field order (the content digest hashes them).

        Every field of a valid event is ASCII, so orjson writes exactly what `json.dumps` with compact
        separators writes (tests/test_events.py holds the two equal: stored digests depend on it). An event
        read from its canonical form returns the bytes it was read from (`_from_canonical`).
        """
        wire = self.__dict__.get("_wire")
        return orjson.dumps(self.to_dict()) if wire is None else wire

    @property
    def key(self):
        """The Kafka message key: a user's events share a partition, so they stay in order."""
        return self.user_id.encode("utf-8")
