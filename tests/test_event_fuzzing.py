"""Property tests: decoding returns an event or rejects with a bounded reason, and never raises.

Hypothesis runs derandomized (the same examples every run, so CI is reproducible) over arbitrary
bytes, arbitrary JSON, and valid events mutated field by field. The coverage-guided fuzzer
(atheris, `make fuzz`) runs for a bounded time as the last test.
"""

import itertools
import json
import os
import subprocess
import sys

import bson
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logs import events
from logs.events import ALL_FIELDS, MAX_REASON_CHARS, ActivityEvent, InvalidEvent
from logs.pipeline.generator import generate_activity
from logs.storage.documents import ActivityLog, content_digest
from tests.support import ROOT

FUZZ_SECONDS = 20

PROPERTY = settings(derandomize=True, max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = [
    {"eventId": "0b6f2d4e-3c1a-4f7e-9a55-2f1f0c9d8e71", "userId": "user-1", "action": "send", "amount": "25.50",
     "currency": "USD", "counterpartyId": "user-2", "transferId": "7d3c1a2b-9e8f-4a6b-8c5d-1e2f3a4b5c6d",
     "timestamp": "2026-11-25T14:52:00.123Z"},
    {"eventId": "1c7e3e5f-4d2b-4e8f-8b66-3a2a1d0e9f82", "userId": "user-2", "action": "receive", "amount": "0.5",
     "currency": "EUR", "counterpartyId": "user-1", "transferId": "7d3c1a2b-9e8f-4a6b-8c5d-1e2f3a4b5c6d",
     "timestamp": "2026-11-25T14:52:00+01:00"},
    {"eventId": "2d8f4f60-5e3c-4f90-9c77-4b3b2e1f0a93", "userId": "user-3", "action": "balance_inquiry",
     "balance": "1200.00", "timestamp": "2026-11-25T14:52:00-05:30"},
]

any_text = st.text(st.characters(exclude_categories=()), max_size=40)  # lone surrogates included
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text
    | st.integers(min_value=-10**60, max_value=10**60) | st.decimals(allow_nan=False).map(str),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)
# Strings near the valid ones: what a careless or hostile producer sends in a field.
near_miss_text = st.sampled_from([
    "", " ", "0", "-0.01", "1e3", "NaN", "Infinity", "١٢٣", "１２", "9" * 50, "user-1", "USD", "send",
    "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2026-02-30T00:00:00Z", "2026-11-25T24:00:00Z",
    "2d8f4f60-5e3c-4f90-9c77-4b3b2e1f0a9", "{2d8f4f60-5e3c-4f90-9c77-4b3b2e1f0a93}", "\ud800", "\x00",
]) | any_text


def decode(raw):
    """The property every input must satisfy; returns the event or None."""
    try:
        event = ActivityEvent.from_bytes(raw)
    except InvalidEvent as rejection:
        assert 0 < len(rejection.reason) <= MAX_REASON_CHARS
        rejection.reason.encode("utf-8")
        return None
    # An accepted event round-trips and is a document the database can hold.
    assert ActivityEvent.from_bytes(event.to_bytes()) == event
    bson.encode(ActivityLog.mongo_document(event))
    return event


@PROPERTY
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_are_decoded_or_rejected(raw):
    decode(raw)


@PROPERTY
@given(json_values)
def test_arbitrary_json_is_decoded_or_rejected(value):
    decode(json.dumps(value).encode("utf-8", "surrogatepass"))


@PROPERTY
@given(st.sampled_from(VALID), st.sampled_from(sorted(ALL_FIELDS) + ["extra"]),
       st.one_of(json_values, near_miss_text), st.booleans())
def test_valid_events_mutated_field_by_field_are_decoded_or_rejected(base, field, value, remove):
    data = dict(base)
    if remove:
        data.pop(field, None)
    else:
        data[field] = value
    decode(json.dumps(data).encode("utf-8", "surrogatepass"))


@PROPERTY
@given(st.sampled_from(VALID), st.data())
def test_valid_events_with_bytes_flipped_are_decoded_or_rejected(base, data):
    raw = bytearray(json.dumps(base).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    decode(bytes(raw))


def exact_parse(raw):
    try:
        return events.parse_json_exactly(raw)
    except InvalidEvent as rejection:
        return rejection.reason


def agrees_with_the_exact_parser(raw):
    fast = events._flat_object(raw)
    if fast is not None:
        exact = exact_parse(raw)
        assert exact == fast
        assert list(exact) == list(fast)  # the same members in the same order


@PROPERTY
@given(st.one_of(json_values.map(lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")),
                 st.dictionaries(near_miss_text, near_miss_text, max_size=9).map(
                     lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")),
                 st.binary(max_size=200).map(lambda tail: b'{"a":"b"' + tail)))
def test_the_fast_json_path_accepts_only_what_the_exact_parser_reads_the_same(raw):
    agrees_with_the_exact_parser(raw)


@pytest.mark.parametrize("raw", [
    b'{"balance":"1.00","balance":"2.00"}', b'{"a":"b","a":"b"}', b'{"a":1,"a":"b"}', b'{"a":{"b":"c"},"a":"d"}',
    b'{"a":["x","y"],"a":"d"}',
])
def test_a_duplicate_name_never_takes_the_fast_json_path(raw):
    assert events._flat_object(raw) is None
    assert "duplicate key" in exact_parse(raw)


@pytest.mark.parametrize("raw", [
    b'{"a":"\\u0062"}', b'\xef\xbb\xbf{"a":"b"}', b' {"a":"b"}', b'{"a":"b",}', b'{"a":"\x01"}',
    b'{"a":"\xed\xa0\x80"}',
    b'{"a":"b"}x', b'{"a":"b","c":1}', b'{"a":"b","c":null}',
])
def test_escapes_other_json_types_and_broken_text_are_left_to_the_exact_parser(raw):
    assert events._flat_object(raw) is None


# Values of each field in the spelling the canonical form allows, valid or refused by a rule the canonical
# pattern does not express (a day that does not exist, a time past the range, money out of bounds, an
# unknown currency, a user paying themselves), and a few in another spelling.
canonical_values = {
    "eventId": ["0b6f2d4e-3c1a-4f7e-9a55-2f1f0c9d8e71", "0B6F2D4E-3C1A-4F7E-9A55-2F1F0C9D8E71", "0b6f2d4e"],
    "userId": ["user-1", "user-2", "x" * 64, "x" * 65, "U_1.a-b", "üser"],
    "timestamp": ["2026-11-25T14:52:00.123Z", "2026-02-30T00:00:00.000Z", "2026-11-25T24:00:00.000Z",
                  "9999-12-30T23:59:59.999Z", "9999-12-31T00:00:00.000Z", "1970-01-01T00:00:00.000Z",
                  "1969-12-31T23:59:59.999Z", "2026-11-25T14:52:00Z", "2026-11-25T14:52:00.123+00:00"],
    "amount": ["25.50", "0.01", "0.00", "1000000.00", "1000000.01", "999999999999999.99", "01.00", "1.5", "1"],
    "currency": ["USD", "EUR", "XYZ", "usd"],
    "counterpartyId": ["user-2", "user-1", "x" * 64],
    "transferId": ["7d3c1a2b-9e8f-4a6b-8c5d-1e2f3a4b5c6d", "7d3c1a2b-9e8f-4a6b-8c5d-1e2f3a4b5c6"],
    "balance": ["1200.00", "0.00", "999999999999999.99", "1000000000000000.00", "00.00", "12.5"],
}


@st.composite
def near_canonical_messages(draw):
    """Messages in the canonical form's layout (compact, the schema's order) with values drawn from
    `canonical_values`, sometimes with bytes flipped."""
    action = draw(st.sampled_from(events.ACTIONS))
    data = {name: action if name == "action" else draw(st.sampled_from(canonical_values[name]))
            for name in events.FIELDS_BY_ACTION[action]}
    raw = bytearray(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
    for _ in range(draw(st.integers(0, 2))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    return bytes(raw)


def general_path(raw):
    try:
        return ActivityEvent.from_dict(events.parse_json(raw))
    except InvalidEvent as rejection:
        return rejection.reason


@PROPERTY
@given(near_canonical_messages())
def test_the_canonical_path_reads_only_what_the_general_path_reads_the_same(raw):
    fast = ActivityEvent._from_canonical(raw)
    if fast is not None:
        assert general_path(raw) == fast
        assert orjson.dumps(fast.to_dict()) == raw  # the message was its own canonical bytes
        assert fast.to_bytes() == raw


def test_what_every_producer_of_ours_sends_takes_the_canonical_path():
    for event in itertools.islice(generate_activity(users=50, seed=18), 300):
        read = ActivityEvent._from_canonical(event.to_bytes())
        assert read == event and read.to_bytes() == event.to_bytes()
        assert content_digest(read) == content_digest(event)


def test_the_valid_examples_are_valid():
    assert all(decode(json.dumps(each).encode()) for each in VALID)


@pytest.mark.fuzz
def test_the_coverage_guided_fuzzer_finds_no_crash(tmp_path):
    """`make fuzz` for FUZZ_SECONDS from the committed seed corpus; a crash fails with its input."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "fuzz_event.py"), f"-max_total_time={FUZZ_SECONDS}",
         f"-artifact_prefix={tmp_path}/", str(tmp_path), str(ROOT / "fuzz" / "corpus")],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=FUZZ_SECONDS + 60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done" in result.stderr
