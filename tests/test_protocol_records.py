"""Every record the protocol allows is an event or a dead letter (docs/contract.md "Delivery and storage guarantees").

Null keys, null values (tombstones), null header values and empty values, written with Apache Kafka's own
Java client (kafka-python refuses to send a null key with a null value, or a null header value), on both
brokers: each one is stored or dead-lettered, and its dead-letter copy is sent (docs/operations.md
"Dead letters": a null value becomes an empty one, and `dlq.original.null` says what was null). The two
rules that need the record, its key and its timestamp, end to end.
"""

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from logs.events import ActivityEvent
from stack import java_producer
from stack.topics import read_topic
from tests.support.commands import consume

# Which records a broker accepts and how it hands them back is its own behaviour: both brokers.
pytestmark = [pytest.mark.integration, pytest.mark.brokers("tansu", "kafka")]


def event(user="user-1", *, at=None):
    moment = (at or datetime.now(timezone.utc)).replace(microsecond=0)
    return ActivityEvent(event_id=str(uuid.uuid4()), user_id=user, action="balance_inquiry", timestamp=moment,
                         balance_cents=500)


def test_null_keys_values_and_header_values_are_stored_or_dead_lettered_and_every_copy_is_sent(
        manage, bootstrap_servers, pipeline_topics, activity_collection):
    topic, dlq_topic = pipeline_topics
    keyless, with_null_header = event("user-1"), event("user-2")
    records = [
        (None, keyless.to_bytes(), [], None),  # a valid event with a null key: stored
        (with_null_header.key, with_null_header.to_bytes(), [("trace", None)], None),  # stored too
        (None, None, [], b"value"),  # null key and null value
        (b"user-3", None, [], b"value"),  # a tombstone
        (b"user-4", b"{bad", [("trace", None), ("span", b"s"), ("baggage", None)], b"header:0,header:2"),
        (None, None, [("trace", None)], b"value,header:0"),
        (b"user-5", b"", [], None),  # empty, not null
    ]
    java_producer.write(bootstrap_servers, [java_producer.send(topic, key, value, headers, partition=0)
                                            for key, value, headers, _ in records])

    output = consume(manage)

    assert sorted(activity_collection.distinct("_id")) == sorted([keyless.event_id, with_null_header.event_id])
    dead = {int(dict(record.headers)["dlq.source.offset"]): record for record in read_topic(bootstrap_servers,
                                                                                              dlq_topic)}
    assert sorted(dead) == [2, 3, 4, 5, 6]
    for offset in dead:
        key, value, headers, marked = records[offset]
        copy = dead[offset]
        named = dict(copy.headers)
        assert copy.key == key and copy.value == (value or b"")
        assert named.get("dlq.original.null") == marked
        assert [(name, data) for name, data in copy.headers if not name.startswith("dlq.")] == [
            (name, data or b"") for name, data in headers]
    assert dead[3].headers and b"null value" in dict(dead[3].headers)["dlq.reason"]
    assert "dead-lettered 5" in output


def test_an_event_keyed_to_another_user_or_dated_past_its_record_plus_the_skew_is_dead_lettered(
        manage, bootstrap_servers, pipeline_topics, activity_collection):
    topic, dlq_topic = pipeline_topics
    now = datetime.now(timezone.utc)
    ok, other_key, future, within_skew = event("user-1"), event("user-1"), event("user-1", at=now.replace(
        year=9999, month=12, day=30)), event("user-1", at=now + timedelta(seconds=100))
    java_producer.write(bootstrap_servers, [java_producer.send(topic, key, value.to_bytes()) for key, value in (
        (b"user-1", ok), (b"user-2", other_key), (b"user-1", future), (None, within_skew))])
    manage.env["ACTIVITY_MAX_CLOCK_SKEW_SECONDS"] = "300"

    consume(manage)

    assert sorted(activity_collection.distinct("_id")) == sorted([ok.event_id, within_skew.event_id])
    reasons = {ActivityEvent.from_bytes(record.value).event_id: dict(record.headers)["dlq.reason"].decode()
               for record in read_topic(bootstrap_servers, dlq_topic)}
    assert reasons[other_key.event_id].startswith("key does not match userId")
    assert reasons[future.event_id].startswith("timestamp in the future")
    assert len(reasons) == 2
