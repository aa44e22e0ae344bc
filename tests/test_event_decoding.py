"""Decoding is total: each class of hostile message that once crashed the consumer is now a rejection.

One test per crash class, named after it; every one asserts the message is rejected with a
readable reason that encodes as UTF-8 and is bounded, and that nothing else is raised.
"""

import json

import pytest

from logs.events import (
    MAX_CONTAINERS,
    MAX_EVENT_BYTES,
    MAX_REASON_CHARS,
    TIMESTAMP_MAX,
    TIMESTAMP_MIN,
    ActivityEvent,
    InvalidEvent,
    format_timestamp,
)

INQUIRY = {
    "eventId": "2d8f4f60-5e3c-4f90-9c77-4b3b2e1f0a93",
    "userId": "user-3",
    "action": "balance_inquiry",
    "balance": "1200.00",
    "timestamp": "2026-11-25T14:52:00Z",
}


def reason_for(raw):
    with pytest.raises(InvalidEvent) as caught:
        ActivityEvent.from_bytes(raw)
    reason = caught.value.reason
    reason.encode("utf-8")  # a lone surrogate would raise here
    assert 0 < len(reason) <= MAX_REASON_CHARS
    return reason


def encoded(**changes):
    return json.dumps({**INQUIRY, **changes}).encode()


@pytest.mark.parametrize("timestamp", [
    "9999-12-31T23:59:59-01:00",  # after year 9999 once the offset is applied
    "0001-01-01T00:00:00+01:00",  # before year 1 once the offset is applied
    "9999-12-31T23:59:59Z",  # a representable instant, but past TIMESTAMP_MAX
    "1969-12-31T23:59:59.999Z",
    "1970-01-01T00:30:00+01:00",
])
def test_timestamps_at_the_edges_of_the_calendar_are_rejected_after_their_offset(timestamp):
    assert "timestamp:" in reason_for(encoded(timestamp=timestamp))


def test_the_timestamp_range_bounds_are_accepted():
    for moment in (TIMESTAMP_MIN, TIMESTAMP_MAX):
        assert ActivityEvent.from_bytes(encoded(timestamp=format_timestamp(moment))).timestamp == moment
    assert ActivityEvent.from_bytes(encoded(timestamp="1970-01-01T01:00:00+01:00")).timestamp == TIMESTAMP_MIN


def test_timestamps_are_cut_to_the_millisecond_mongodb_stores():
    event = ActivityEvent.from_bytes(encoded(timestamp="2026-11-25T14:52:00.123999Z"))
    assert event.timestamp.microsecond == 123000
    assert ActivityEvent.from_bytes(event.to_bytes()) == event


@pytest.mark.parametrize("timestamp", [
    "2026-11-25 14:52:00Z", "20261125T145200Z", "2026-W48-3T10:00Z", "2026-11-25T14:52:00+23:59",
    "2026-11-25T14:52:00z", "2026-11-25T14:52:00.1234567890Z",
])
def test_timestamps_in_other_iso_8601_spellings_than_rfc_3339_are_rejected(timestamp):
    assert "timestamp:" in reason_for(encoded(timestamp=timestamp))


@pytest.mark.parametrize("digits", [5000, 4301, 41])
def test_json_numbers_with_thousands_of_digits_are_rejected_before_conversion(digits):
    assert "JSON number of" in reason_for(encoded(balance=None)[:-1] + b', "n": ' + b"9" * digits + b"}")


def test_a_short_json_number_in_a_money_field_is_rejected_as_a_number():
    assert "balance: must be a decimal string" in reason_for(encoded()[:-1].replace(b'"1200.00"', b"1200.00") + b"}")


@pytest.mark.parametrize("opening", [b"[", b'{"a":'])
def test_deeply_nested_json_is_rejected_before_parsing(opening):
    raw = opening * 100_000
    assert "too large" in reason_for(raw)
    assert f"(at most {MAX_CONTAINERS})" in reason_for(opening * (MAX_CONTAINERS + 1))


def test_brackets_inside_strings_do_not_count_as_nesting():
    assert reason_for(encoded(userId="[" * 200)).startswith("userId:")


@pytest.mark.parametrize("field, value", [
    ("userId", ["user-1"]), ("userId", {"a": 1}), ("action", ["send"]), ("action", {"send": 1}),
    ("eventId", 7), ("eventId", True), ("balance", None), ("balance", [1]), ("timestamp", {"t": 1}),
    ("timestamp", 1764082320),
])
def test_wrong_json_types_where_a_string_is_expected_are_rejected(field, value):
    assert f"{field}:" in reason_for(encoded(**{field: value}))


@pytest.mark.parametrize("raw", [b"[]", b"null", b"true", b"12", b'"event"', b"1e999"])
def test_json_that_is_not_an_object_is_rejected(raw):
    assert reason_for(raw)


def test_lone_surrogates_in_a_message_make_a_reason_that_still_encodes():
    raw = encoded()[:-1] + b', "\\ud800": "\\udfff"}'
    assert "unknown field" in reason_for(raw)
    assert "userId:" in reason_for(encoded(userId="\ud800"))


@pytest.mark.parametrize("field, value", [
    ("balance", "١٢٣.٠٠"),  # Arabic-Indic digits
    ("balance", "１２.００"),  # full-width digits
    ("eventId", "2d8f4f60-5e3c-4f90-9c77-4b3b2e1f0a9３"),
    ("timestamp", "２026-11-25T14:52:00Z"),
    ("timestamp", "2026-11-25T14:52:00+0١:00"),
])
def test_non_ascii_digits_are_rejected_in_money_ids_and_timestamps(field, value):
    assert f"{field}:" in reason_for(encoded(**{field: value}))


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(constant):
    assert "is not JSON" in reason_for(encoded()[:-1] + b', "x": ' + constant + b"}")


def test_duplicate_keys_are_rejected_not_resolved_silently():
    raw = encoded()[:-1] + b', "balance": "0.00"}'
    assert "duplicate key 'balance'" in reason_for(raw)


def test_a_byte_order_mark_is_rejected():
    assert "byte order mark" in reason_for(b"\xef\xbb\xbf" + encoded())


def test_messages_above_the_size_bound_are_rejected_unread():
    assert "too large" in reason_for(b" " * (MAX_EVENT_BYTES + 1))


def test_invalid_utf8_gets_a_short_reason():
    assert reason_for(b"\xff" * 10_000).startswith("not UTF-8")


def test_reasons_quote_at_most_a_prefix_of_a_huge_value():
    reason = reason_for(encoded(userId="x" * 10_000, eventId="y" * 5_000))
    assert len(reason) < 400 and "userId:" in reason and "eventId:" in reason


def test_a_huge_unknown_field_name_is_quoted_short():
    assert len(reason_for(json.dumps({**INQUIRY, "k" * 9000: 1}).encode())) < 300


def test_a_null_value_is_a_rejection():
    assert reason_for(None) == "empty message (null value)"
