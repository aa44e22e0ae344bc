"""The event schema (docs/contract.md "The event"): every rule has a passing and a failing case."""

import json
from datetime import datetime, timezone

import pytest

from logs.events import ActivityEvent, InvalidEvent

SEND = {
    "eventId": "0b6f2d4e-3c1a-4f7e-9a55-2f1f0c9d8e71",
    "userId": "user-1",
    "action": "send",
    "amount": "25.50",
    "currency": "USD",
    "counterpartyId": "user-2",
    "transferId": "7d3c1a2b-9e8f-4a6b-8c5d-1e2f3a4b5c6d",
    "timestamp": "2026-11-25T14:52:00.123Z",
}
RECEIVE = {**SEND, "eventId": "1c7e3e5f-4d2b-4e8f-8b66-3a2a1d0e9f82", "action": "receive",
           "userId": "user-2", "counterpartyId": "user-1"}
INQUIRY = {
    "eventId": "2d8f4f60-5e3c-4f90-9c77-4b3b2e1f0a93",
    "userId": "user-3",
    "action": "balance_inquiry",
    "balance": "1200.00",
    "timestamp": "2026-11-25T14:52:00+01:00",
}


def parse(data):
    return ActivityEvent.from_bytes(json.dumps(data).encode())


def rejection(data):
    with pytest.raises(InvalidEvent) as caught:
        parse(data)
    return caught.value.reason


def with_(base, **changes):
    return {**base, **changes}


def without(base, field):
    return {name: value for name, value in base.items() if name != field}


@pytest.mark.parametrize("data", [SEND, RECEIVE, INQUIRY], ids=["send", "receive", "balance_inquiry"])
def test_valid_events_round_trip_through_the_wire_form(data):
    event = parse(data)
    assert parse(event.to_dict()) == event
    assert ActivityEvent.from_bytes(event.to_bytes()) == event


def test_money_is_kept_as_integer_cents():
    assert parse(SEND).amount_cents == 2550
    assert parse(INQUIRY).balance_cents == 120000
    assert parse(with_(SEND, amount="7")).amount_cents == 700
    assert parse(with_(SEND, amount="0.5")).amount_cents == 50


def test_timestamps_are_normalised_to_utc():
    assert parse(INQUIRY).timestamp == datetime(2026, 11, 25, 13, 52, tzinfo=timezone.utc)
    assert parse(SEND).to_dict()["timestamp"] == "2026-11-25T14:52:00.123Z"


def test_event_ids_are_compared_in_canonical_lowercase():
    assert parse(with_(SEND, eventId=SEND["eventId"].upper())).event_id == SEND["eventId"]


@pytest.mark.parametrize("raw, reason", [
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1, 2]", "must be a JSON object"),
    (b"\"send\"", "must be a JSON object"),
])
def test_messages_that_are_not_a_json_object_are_rejected(raw, reason):
    with pytest.raises(InvalidEvent, match=reason):
        ActivityEvent.from_bytes(raw)


@pytest.mark.parametrize("field", ["eventId", "userId", "action", "timestamp"])
def test_common_fields_are_required(field):
    assert f"{field}: required" in rejection(without(SEND, field))


@pytest.mark.parametrize("field", ["amount", "currency", "counterpartyId", "transferId"])
def test_transfer_fields_are_required_for_send_and_receive(field):
    assert f"{field}: required for action 'send'" in rejection(without(SEND, field))
    assert f"{field}: required for action 'receive'" in rejection(without(RECEIVE, field))


def test_balance_is_required_for_balance_inquiry():
    assert "balance: required for action 'balance_inquiry'" in rejection(without(INQUIRY, "balance"))


@pytest.mark.parametrize("field, value", [("balance", "10.00")])
def test_fields_of_another_action_are_rejected_not_ignored(field, value):
    assert f"{field}: not allowed for action 'send'" in rejection(with_(SEND, **{field: value}))


@pytest.mark.parametrize("field", ["amount", "currency", "counterpartyId", "transferId"])
def test_transfer_fields_are_rejected_on_balance_inquiry(field):
    assert f"{field}: not allowed for action 'balance_inquiry'" in rejection(with_(INQUIRY, **{field: SEND[field]}))


def test_unknown_fields_are_rejected():
    assert "note: unknown field" in rejection(with_(SEND, note="hi"))


def test_a_null_for_a_field_of_another_action_is_still_rejected():
    assert "balance: not allowed" in rejection(with_(SEND, balance=None))


@pytest.mark.parametrize("value", ["not-a-uuid", "0b6f2d4e3c1a4f7e9a552f1f0c9d8e71", "", 42, None])
def test_event_id_must_be_a_uuid(value):
    assert "eventId:" in rejection(with_(SEND, eventId=value))


@pytest.mark.parametrize("value", ["", "x" * 65, "user 1", "user/1", "üser", 7, None])
def test_user_id_is_1_to_64_safe_characters(value):
    assert "userId:" in rejection(with_(SEND, userId=value))


@pytest.mark.parametrize("value", ["a", "x" * 64, "User_1.test-2"])
def test_user_id_accepts_letters_digits_and_underscore_dot_dash(value):
    assert parse(with_(INQUIRY, userId=value)).user_id == value


@pytest.mark.parametrize("value", ["withdraw", "SEND", "", None, 1])
def test_action_must_be_one_of_the_three(value):
    assert "action: must be one of send, receive, balance_inquiry" in rejection(with_(SEND, action=value))


@pytest.mark.parametrize("value, message", [
    ("0", "greater than 0"),
    ("0.00", "greater than 0"),
    ("-5.00", "plain decimal"),
    ("1.234", "plain decimal"),
    ("1000000.01", "at most 1000000.00"),
    ("1e3", "plain decimal"),
    ("NaN", "plain decimal"),
    (" 5", "plain decimal"),
    (12.5, "not a JSON number"),
    (12, "not a JSON number"),
])
def test_amount_is_a_positive_decimal_string_with_two_places_at_most(value, message):
    reason = rejection(with_(SEND, amount=value))
    assert "amount:" in reason and message in reason


def test_amount_may_be_exactly_one_million():
    assert parse(with_(SEND, amount="1000000.00")).amount_cents == 100_000_000


@pytest.mark.parametrize("value", ["usd", "US", "USDX", "XYZ", "XXX", 840, None])
def test_currency_must_be_an_iso_4217_code(value):
    assert "currency: must be an ISO 4217" in rejection(with_(SEND, currency=value))


@pytest.mark.parametrize("value", ["EUR", "JPY", "GBP"])
def test_currency_accepts_iso_4217_codes(value):
    assert parse(with_(SEND, currency=value)).currency == value


def test_counterparty_must_differ_from_the_user():
    assert "counterpartyId: must differ from userId" in rejection(with_(SEND, counterpartyId="user-1"))


def test_counterparty_follows_the_user_id_rules():
    assert "counterpartyId:" in rejection(with_(SEND, counterpartyId="bad id"))


def test_transfer_id_must_be_a_uuid():
    assert "transferId:" in rejection(with_(SEND, transferId="t-1"))


@pytest.mark.parametrize("value, message", [("-0.01", "plain decimal"), ("1.001", "plain decimal"),
                                            (5, "not a JSON number")])
def test_balance_is_a_non_negative_decimal_string(value, message):
    reason = rejection(with_(INQUIRY, balance=value))
    assert "balance:" in reason and message in reason


def test_balance_may_be_zero():
    assert parse(with_(INQUIRY, balance="0.00")).balance_cents == 0


@pytest.mark.parametrize("value, message", [
    ("2026-11-25T14:52:00", "no time zone"),
    ("2026-11-25", "no time zone"),
    ("yesterday", "not an ISO 8601"),
    ("2026-13-01T00:00:00Z", "not an ISO 8601"),
    (1764082320, "must be an ISO 8601 string"),
])
def test_timestamp_is_iso_8601_with_a_zone(value, message):
    reason = rejection(with_(SEND, timestamp=value))
    assert "timestamp:" in reason and message in reason


def test_every_problem_is_named_in_one_reason():
    reason = rejection(with_(SEND, amount="-1", currency="usd", extra=1))
    assert "amount:" in reason and "currency:" in reason and "extra: unknown field" in reason


def test_the_message_key_is_the_user_id():
    assert parse(SEND).key == b"user-1"


# The rules that need the Kafka record (docs/contract.md "The event"): its key and its timestamp.
RECORD_TIME_MS = int(datetime(2026, 11, 25, 14, 52, tzinfo=timezone.utc).timestamp() * 1000)
SKEW_SECONDS = 300


def from_record(data, *, key=b"user-1", timestamp_ms=RECORD_TIME_MS, skew=SKEW_SECONDS):
    return ActivityEvent.from_record(json.dumps(data).encode(), key=key, timestamp_ms=timestamp_ms,
                                     max_clock_skew_seconds=skew)


def record_rejection(data, **record):
    with pytest.raises(InvalidEvent) as caught:
        from_record(data, **record)
    return caught.value.reason


def test_an_event_keyed_by_its_user_or_with_a_null_key_is_accepted():
    assert from_record(SEND, key=b"user-1") == parse(SEND)
    assert from_record(SEND, key=None) == parse(SEND)


@pytest.mark.parametrize("key", [b"user-2", b"", b"USER-1", b"user-1 ", b"\xff"])
def test_a_key_other_than_the_user_id_is_rejected(key):
    assert record_rejection(SEND, key=key).startswith("key does not match userId")


def test_an_event_up_to_the_allowed_skew_after_its_record_is_accepted():
    at_limit = "2026-11-25T14:57:00.000Z"  # record time + 300 s
    assert from_record(with_(SEND, timestamp=at_limit)).timestamp == datetime(2026, 11, 25, 14, 57, tzinfo=timezone.utc)
    assert from_record(with_(SEND, timestamp="1970-01-01T00:00:00Z"))  # the past is never refused


@pytest.mark.parametrize("timestamp", ["2026-11-25T14:57:00.001Z", "2026-11-25T15:57:00.001+01:00",
                                       "9999-12-30T00:00:00Z"])
def test_an_event_dated_later_than_its_record_plus_the_skew_is_rejected(timestamp):
    reason = record_rejection(with_(SEND, timestamp=timestamp))
    assert reason.startswith("timestamp in the future")
    assert "2026-11-25T14:52:00.000Z" in reason and "300 s" in reason


def test_the_skew_is_a_setting_of_the_caller():
    late = with_(SEND, timestamp="2026-11-25T14:52:01.000Z")
    assert record_rejection(late, skew=0).startswith("timestamp in the future")
    assert from_record(late, skew=1)


@pytest.mark.parametrize("timestamp_ms", [-1, None])
def test_a_record_without_a_timestamp_cannot_vouch_for_the_event(timestamp_ms):
    assert "has no timestamp" in record_rejection(SEND, timestamp_ms=timestamp_ms)


def test_both_record_rules_are_reported_together_and_value_problems_come_first():
    reason = record_rejection(with_(SEND, timestamp="9999-12-30T00:00:00Z"), key=b"user-2")
    assert "key does not match userId" in reason and "timestamp in the future" in reason
    assert record_rejection(with_(SEND, amount="-1"), key=b"user-2").startswith("amount:")


@pytest.mark.parametrize("data", [SEND, RECEIVE, INQUIRY], ids=["send", "receive", "balance_inquiry"])
def test_the_canonical_bytes_are_what_json_dumps_writes_so_stored_digests_stay_valid(data):
    event = parse(data)
    assert event.to_bytes() == json.dumps(event.to_dict(), separators=(",", ":")).encode()
