"""`redrive_dead_letters`: dead letters back on their source topic, on the real local broker and database.

The dead-letter topic is filled either by the real consumer (a MongoDB validator refuses some events, then
the "fix" drops it) or with the consumer's own `dead_letter_record` (the one writer of the format), and the
re-driven copies are consumed by the real consumer. Where the broker's own behaviour matters (a group's
committed offsets, kill -9 mid-run) a test runs on both brokers; elsewhere on one (tests/conftest.py).
"""

import os
import re
import signal
import threading
import time
from dataclasses import dataclass

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata
from pymongo import MongoClient

from logs.events import ActivityEvent, InvalidEvent
from logs.pipeline.failures import Rejected, StopConsuming
from logs.pipeline.ingestion import dead_letter_record
from logs.pipeline.redrive import Copy, Skip, plan, redrive_dead_letters
from logs.storage.documents import ActivityLog
from stack.topics import read_topic
from tests.support.broker import committed_offsets, ends_of_records
from tests.support.builders import valid_event
from tests.support.commands import consume
from tests.support.hostile import UndecodableHeaderName
from tests.support.waiting import wait_for

REDRIVE = ("redrive_dead_letters",)
REFUSED_BY_MONGODB = "refused by MongoDB: code 121: Document failed validation"


@dataclass
class Original:
    """A source-topic record as the consumer sees it (the fields `dead_letter_record` reads)."""

    value: bytes | None
    key: bytes | None = None
    headers: list | None = None
    topic: str = "activity"
    partition: int = 0
    offset: int = 0
    timestamp: int = 0


def send_dead_letters(bootstrap_servers, dlq_topic, dead_letters, *, partition=None):
    """Publish (key, value, headers) dead-letter copies, each acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", max_request_size=4 * 1024 * 1024)
    try:
        futures = [producer.send(dlq_topic, key=key, value=value, headers=headers, partition=partition)
                   for key, value, headers in dead_letters]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=0)
    finally:
        producer.close()


def dead_letters_of(events, *, topic, reason=REFUSED_BY_MONGODB, headers=()):
    """The consumer's dead-letter copies of valid events it could not store, at offsets 0, 1, ..."""
    return [dead_letter_record(Rejected(Original(event.to_bytes(), key=event.key, headers=list(headers), topic=topic,
                                                 partition=index % 3, offset=index), reason),
                               group="group", max_bytes=900_000)
            for index, event in enumerate(events)]


def rejection(value):
    """The validator's reason for refusing `value`."""
    with pytest.raises(InvalidEvent) as refused:
        ActivityEvent.from_bytes(value)
    return refused.value.reason


def redrive(manage, *args, timeout=180):
    result = manage.run(*REDRIVE, *args, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def totals(output):
    """The summary's first line, as numbers: read, of, re-driven (or would), skipped."""
    match = re.search(r"read (\d+) of (\d+) dead letters in group \S+: (?:would re-drive|re-driven) (\d+) to \S+, "
                      r"skipped (\d+)", output)
    assert match, output
    return dict(zip(("read", "of", "redriven", "skipped"), map(int, match.groups())))


def stored_ids(collection):
    return sorted(document["_id"] for document in collection.find({}, {"_id": 1}))


def event_ids(records):
    return [ActivityEvent.from_bytes(record.value).event_id for record in records]


def redriven(records):
    """The re-driven copies among a topic's records."""
    return [record for record in records if "dlq.redrive.attempt" in dict(record.headers)]


def redrive_group(env):
    return f"{env['KAFKA_CONSUMER_GROUP']}.redrive"


# --- what a re-driven copy is (pure) ---------------------------------------------------------------------

def dead_letter(value=b"{bad", *, headers=(), reason="not JSON", topic="activity", partition=0, max_bytes=900_000):
    """A dead-letter copy as the redrive's consumer reads it."""
    key, value, copy_headers = dead_letter_record(
        Rejected(Original(value, key=b"user-1", headers=list(headers), topic=topic, partition=partition, offset=7),
                 reason), group="g", max_bytes=max_bytes)
    return Original(value, key=key, headers=copy_headers, topic="activity.dlq", timestamp=1_700_000_000_000)


def planned(record, *, max_attempts=3):
    return plan(record, source="activity", dlq_topic="activity.dlq", max_attempts=max_attempts)


def test_a_redriven_copy_is_the_original_key_value_and_headers_with_the_attempt_counted():
    copy = planned(dead_letter(b"{bad", headers=[("trace", b"abc"), ("empty", b"")]))
    assert copy == Copy(key=b"user-1", value=b"{bad",
                        headers=[("trace", b"abc"), ("empty", b""), ("dlq.redrive.attempt", b"1")],
                        timestamp_ms=1_700_000_000_000)


def test_the_count_grows_with_each_redrive_and_stops_at_max_attempts():
    twice = dead_letter(headers=[("dlq.redrive.attempt", b"2")])
    assert dict(planned(twice).headers)["dlq.redrive.attempt"] == b"3"
    assert planned(twice, max_attempts=2) == Skip("re-driven 2 times already (--max-attempts 2)")


def with_headers(record, headers):
    return Original(record.value, key=record.key, headers=headers, topic=record.topic, timestamp=record.timestamp)


@pytest.mark.parametrize("change, why", [
    (lambda headers: [h for h in headers if h[0] != "dlq.source.topic"], "no source topic"),
    (lambda headers: [h if h[0] != "dlq.source.topic" else (h[0], b"activity.dlq") for h in headers],
     "the dead-letter topic itself"),
    (lambda headers: [h if h[0] != "dlq.source.topic" else (h[0], b"payments") for h in headers],
     "its source topic 'payments' is not KAFKA_TOPIC (activity)"),
    (lambda headers: [h if h[0] != "dlq.source.topic" else (h[0], b"\xff") for h in headers], "no source topic"),
    (lambda headers: headers + [("dlq.reason", b"forged")], "malformed"),
    (lambda headers: headers + [("dlq.redrive.attempt", b"two")], "malformed"),
    (lambda headers: headers + [("dlq.original.null", b"header:5")], "malformed"),
    (lambda headers: headers + [("dlq.original.null", b"value")], "the original value was null"),
], ids=["no-source", "source-is-dlq", "other-source", "source-not-utf8", "repeated-reason", "bad-attempt",
        "null-mark-past-the-headers", "null-value"])
def test_a_dead_letter_that_cannot_be_redriven_is_skipped_with_why(change, why):
    record = dead_letter(headers=[("trace", b"abc")])
    outcome = planned(with_headers(record, change(record.headers)))
    assert isinstance(outcome, Skip) and why in outcome.why


def test_a_null_value_written_by_an_older_consumer_is_skipped():
    record = dead_letter(None)
    assert planned(record) == Skip("the original value was null: never an event")


def test_a_cut_copy_is_skipped_and_says_where_the_whole_original_is():
    record = dead_letter(b"[" * 300_000, max_bytes=100_000, partition=2)
    assert planned(record) == Skip("cut copy: the whole original is on the source topic", original="activity[2]@7")


def test_header_values_that_were_null_go_back_empty_and_are_counted():
    record = dead_letter(headers=[("trace", b"abc"), ("parent", b"")])
    marked = with_headers(record, record.headers + [("dlq.original.null", b"header:1")])
    copy = planned(marked)
    assert copy.headers[:2] == [("trace", b"abc"), ("parent", b"")] and copy.nulls_sent_empty == 1


# --- the command, end to end -----------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.brokers("tansu", "kafka")
def test_dead_letters_redriven_after_a_fix_are_stored_once_and_a_second_run_sends_nothing(
        manage, pipeline_env, bootstrap_servers, pipeline_topics, mongodb_uri, activity_collection):
    topic, dlq_topic = pipeline_topics
    refused = [valid_event(f"user-{number}") for number in range(12)]
    accepted = [valid_event("user-ok") for _ in range(5)]
    with MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000) as client:
        database = client.get_default_database()
        database.create_collection(ActivityLog._meta["collection"], validator={"userId": "user-ok"})
        producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
        for event in [*refused, *accepted]:
            producer.send(topic, key=event.key, value=event.to_bytes(), headers=[("trace", event.event_id.encode())])
        producer.close()
        consume(manage)
        assert stored_ids(activity_collection) == sorted(event.event_id for event in accepted)
        database.command("collMod", ActivityLog._meta["collection"], validator={})  # the fix

    output = redrive(manage)

    assert totals(output) == {"read": 12, "of": 12, "redriven": 12, "skipped": 0}
    copies = redriven(read_topic(bootstrap_servers, topic))
    originals = {event.event_id: event for event in refused}
    assert sorted(event_ids(copies)) == sorted(originals)
    for copy in copies:
        event = originals[ActivityEvent.from_bytes(copy.value).event_id]
        assert (copy.key, copy.value) == (event.key, event.to_bytes())
        assert copy.headers == [("trace", event.event_id.encode()), ("dlq.redrive.attempt", b"1")]
    consume(manage)
    assert stored_ids(activity_collection) == sorted([*originals, *(event.event_id for event in accepted)])
    assert committed_offsets(bootstrap_servers, dlq_topic, redrive_group(pipeline_env)) == \
        ends_of_records(bootstrap_servers, dlq_topic)

    again = redrive(manage)

    assert totals(again) == {"read": 0, "of": 0, "redriven": 0, "skipped": 0}
    assert len(read_topic(bootstrap_servers, topic)) == len(refused) * 2 + len(accepted)

    manage.env["KAFKA_REDRIVE_GROUP"] = f"{pipeline_env['KAFKA_CONSUMER_GROUP']}.second"  # the same letters, again
    assert totals(redrive(manage))["redriven"] == len(refused)
    consume(manage)
    assert stored_ids(activity_collection) == sorted([*originals, *(event.event_id for event in accepted)])
    assert len(read_topic(bootstrap_servers, topic)) == len(refused) * 3 + len(accepted)


def dead_letters_in_partition(bootstrap_servers, dlq_topic, dead_letters, partition=0):
    send_dead_letters(bootstrap_servers, dlq_topic, dead_letters, partition=partition)


@pytest.mark.integration
def test_a_record_invalid_again_comes_back_with_its_new_reason_and_count_until_max_attempts(
        manage, pipeline_env, bootstrap_servers, pipeline_topics):
    topic, dlq_topic = pipeline_topics
    invalid = [(b"user-1", b'{"eventId": "x"}'), (b"user-2", b"{not json"), (None, b"[]")]
    send_dead_letters(bootstrap_servers, dlq_topic, [
        dead_letter_record(Rejected(Original(value, key=key, topic=topic, offset=index), "not JSON"), group="g",
                           max_bytes=900_000) for index, (key, value) in enumerate(invalid)])

    sizes = []
    for _ in range(3):
        redrive(manage, "--max-attempts", "2")
        consume(manage)
        sizes.append(len(read_topic(bootstrap_servers, dlq_topic)))

    assert sizes == [6, 9, 9]  # each round adds the copies rejected again, until the count reaches 2
    dead = read_topic(bootstrap_servers, dlq_topic)
    by_attempt = {}
    for record in dead:
        by_attempt.setdefault(dict(record.headers).get("dlq.redrive.attempt"), []).append(record)
    assert sorted(by_attempt, key=str) == [None, b"1", b"2"]
    for attempt, records in by_attempt.items():
        assert sorted((record.key or b"", record.value) for record in records) == sorted(
            (key or b"", value) for key, value in invalid)
        if attempt is not None:  # the consumer's own reason for the re-driven copy, and where it read it
            assert all(dict(record.headers)["dlq.source.topic"] == topic.encode() for record in records)
            assert all(dict(record.headers)["dlq.reason"].decode() == rejection(record.value) for record in records)
    assert len(redriven(read_topic(bootstrap_servers, topic))) == 6
    last = redrive(manage, "--max-attempts", "2")
    assert totals(last) == {"read": 0, "of": 0, "redriven": 0, "skipped": 0}


@pytest.mark.integration
def test_dead_letters_that_cannot_be_redriven_are_left_where_they_are_and_the_summary_says_why_and_where(
        manage, pipeline_env, bootstrap_servers, pipeline_topics):
    topic, dlq_topic = pipeline_topics
    event = valid_event()

    def copy(value=b"{bad", *, reason="not JSON", source=topic, max_bytes=900_000, headers=(), **fields):
        key, value, copy_headers = dead_letter_record(
            Rejected(Original(value, key=b"user-1", headers=list(headers), topic=source, **fields), reason),
            group="g", max_bytes=max_bytes)
        return key, value, copy_headers

    key, value, headers = copy(event.to_bytes(), reason=REFUSED_BY_MONGODB, headers=[("parent", b"")])
    null_value = copy(b"", reason="empty message (null value)")
    send_dead_letters(bootstrap_servers, dlq_topic, [
        (key, value, [*headers, ("dlq.original.null", b"header:0")]),
        (b"user-1", b"{bad", [("dlq.reason", b"not JSON")]),
        copy(source=dlq_topic),
        copy(source="payments"),
        copy(b"[" * 300_000, reason="too large", max_bytes=100_000, partition=1, offset=42),
        copy(None, reason="empty message (null value)"),
        (null_value[0], null_value[1], [*null_value[2], ("dlq.original.null", b"value")]),
    ], partition=0)

    output = redrive(manage)

    assert totals(output) == {"read": 7, "of": 7, "redriven": 1, "skipped": 6}
    [sent] = read_topic(bootstrap_servers, topic)
    assert (sent.key, sent.value, sent.headers) == (b"user-1", event.to_bytes(),
                                                     [("parent", b""), ("dlq.redrive.attempt", b"1")])
    assert "1 header values that were null in the originals went back empty" in output
    lines = output.splitlines()
    assert any("'too large': re-driven 0, skipped 1 (cut copy: the whole original is on the source topic: 1); "
               f"the whole originals are at {topic}[1]@42" in line for line in lines), output
    assert f"its source topic 'payments' is not KAFKA_TOPIC ({topic}): 1" in output
    for why in ("no source topic", "its source topic is the dead-letter topic itself",
                "the original value was null: never an event: 2"):
        assert why in output
    assert len(read_topic(bootstrap_servers, dlq_topic)) == 7
    assert totals(redrive(manage))["read"] == 0  # left where they are, and not read again


@pytest.mark.integration
def test_a_reason_filter_redrives_only_matching_records_and_leaves_the_others_for_later_runs(
        manage, pipeline_env, bootstrap_servers, pipeline_topics, activity_collection):
    topic, dlq_topic = pipeline_topics
    refused, unparsed = [valid_event() for _ in range(4)], [valid_event() for _ in range(3)]
    unparsable = dead_letters_of(unparsed, topic=topic, reason="not JSON")
    interleaved = [*dead_letters_of(refused[:2], topic=topic), *unparsable,
                   *dead_letters_of(refused[2:], topic=topic)]
    send_dead_letters(bootstrap_servers, dlq_topic, interleaved, partition=0)

    first = redrive(manage, "--reason", "MongoDB")

    assert totals(first) == {"read": 7, "of": 7, "redriven": 4, "skipped": 0}
    assert "3 with other reasons left for other runs" in first
    assert sorted(event_ids(read_topic(bootstrap_servers, topic))) == sorted(event.event_id for event in refused)
    assert totals(redrive(manage, "--reason", "MongoDB"))["redriven"] == 0  # its own position
    assert totals(redrive(manage, "--reason", "not JSON"))["redriven"] == 3  # not lost to the first filter
    # The unfiltered group has its own position too: it sends the first filter's records once more, which the
    # consumer skips as replays (docs/decisions/0016-redrive-send-then-commit-a-group-per-filter.md).
    assert totals(redrive(manage))["redriven"] == 7
    consume(manage)
    assert stored_ids(activity_collection) == sorted(event.event_id for event in [*refused, *unparsed])
    # A new filter starts where the unfiltered runs stand, not at the beginning.
    assert totals(redrive(manage, "--reason", "refused"))["read"] == 0


@pytest.mark.integration
def test_a_dry_run_publishes_nothing_and_commits_nothing(
        manage, pipeline_env, bootstrap_servers, pipeline_topics):
    topic, dlq_topic = pipeline_topics
    send_dead_letters(bootstrap_servers, dlq_topic, dead_letters_of([valid_event() for _ in range(5)], topic=topic))

    output = redrive(manage, "--dry-run")

    assert totals(output) == {"read": 5, "of": 5, "redriven": 5, "skipped": 0}
    assert "dry run, nothing sent or committed: read 5 of 5" in output and "would re-drive 5" in output
    assert read_topic(bootstrap_servers, topic) == []
    assert committed_offsets(bootstrap_servers, dlq_topic, redrive_group(pipeline_env)) == {}
    assert totals(redrive(manage))["redriven"] == 5


@pytest.mark.integration
def test_a_limit_redrives_at_most_that_many_and_the_next_run_goes_on_from_there_without_resending(
        manage, pipeline_env, bootstrap_servers, pipeline_topics):
    topic, dlq_topic = pipeline_topics
    events = [valid_event() for _ in range(15)]
    no_source = (b"user-1", b"{}", [("dlq.reason", b"forged")])
    letters = dead_letters_of(events, topic=topic)
    send_dead_letters(bootstrap_servers, dlq_topic, [*letters[:3], no_source, *letters[3:6], no_source, no_source,
                                                     *letters[6:10]], partition=0)
    send_dead_letters(bootstrap_servers, dlq_topic, letters[10:], partition=1)

    assert totals(redrive(manage, "--limit", "4", "--batch-size", "3"))["redriven"] == 4
    assert len(read_topic(bootstrap_servers, topic)) == 4
    assert totals(redrive(manage, "--limit", "4"))["redriven"] == 4
    assert totals(redrive(manage))["redriven"] == 7

    sent = event_ids(read_topic(bootstrap_servers, topic))
    assert sorted(sent) == sorted(event.event_id for event in events)  # each once: none resent, none lost
    assert committed_offsets(bootstrap_servers, dlq_topic, redrive_group(pipeline_env)) == \
        ends_of_records(bootstrap_servers, dlq_topic)


def fill_dead_letter_topic(bootstrap_servers, topic, dlq_topic, count):
    """`count` dead letters of valid events, spread over the partitions; returns their eventIds."""
    events = [valid_event(f"user-{number % 50}") for number in range(count)]
    send_dead_letters(bootstrap_servers, dlq_topic, dead_letters_of(events, topic=topic))
    return sorted(event.event_id for event in events)


def progress_reached(child, redriven):
    """True once the command's progress says at least `redriven` records were re-driven (and acknowledged)."""
    if child.poll() is not None:
        raise AssertionError(f"the re-drive ended before it could be interrupted:\n{child.output()}")
    counts = [int(count) for count in re.findall(r"re-driven (\d+), skipped", child.output())]
    return counts and counts[-1] >= redriven


INTERRUPTED_RUN_DEAD_LETTERS = 10_000


def interrupt_a_redrive(manage, bootstrap_servers, topics, signum):
    """Fill the dead-letter topic, start the command, and send it `signum` once it has re-driven a tenth;
    returns the eventIds of the dead letters and the child process."""
    topic, dlq_topic = topics
    expected = fill_dead_letter_topic(bootstrap_servers, topic, dlq_topic, INTERRUPTED_RUN_DEAD_LETTERS)
    child = manage.start(*REDRIVE, "--batch-size", "100", "--progress-every", "0.05", name="redrive")
    wait_for(lambda: progress_reached(child, INTERRUPTED_RUN_DEAD_LETTERS // 10), timeout=120,
             message="the re-drive under way")
    child.send_signal(signum)
    return expected, child


@pytest.mark.integration
@pytest.mark.brokers("tansu", "kafka")
def test_a_redrive_killed_mid_run_loses_nothing_and_the_consumer_stores_nothing_twice(
        manage, pipeline_env, bootstrap_servers, pipeline_topics, activity_collection):
    topic, dlq_topic = pipeline_topics
    expected, child = interrupt_a_redrive(manage, bootstrap_servers, pipeline_topics, signal.SIGKILL)
    child.wait(timeout=30)

    group = redrive_group(pipeline_env)
    assert 0 < sum(committed_offsets(bootstrap_servers, dlq_topic, group).values()) < INTERRUPTED_RUN_DEAD_LETTERS
    finished = redrive(manage, timeout=300)
    assert totals(finished)["redriven"] < INTERRUPTED_RUN_DEAD_LETTERS
    assert committed_offsets(bootstrap_servers, dlq_topic, group) == ends_of_records(bootstrap_servers, dlq_topic)
    sent = event_ids(read_topic(bootstrap_servers, topic))
    assert set(sent) == set(expected)  # nothing lost; what was sent and not committed went again
    consume(manage)
    assert stored_ids(activity_collection) == expected  # each once


@pytest.mark.integration
def test_sigterm_stops_a_redrive_cleanly_having_committed_everything_it_sent(
        manage, pipeline_env, bootstrap_servers, pipeline_topics):
    topic, dlq_topic = pipeline_topics
    expected, child = interrupt_a_redrive(manage, bootstrap_servers, pipeline_topics, signal.SIGTERM)

    assert child.wait(timeout=30) == 0, child.output()
    assert "stopped by SIGTERM" in child.output()
    sent = event_ids(read_topic(bootstrap_servers, topic))
    assert sum(committed_offsets(bootstrap_servers, dlq_topic, redrive_group(pipeline_env)).values()) == len(sent)
    assert len(sent) < INTERRUPTED_RUN_DEAD_LETTERS
    redrive(manage, timeout=300)
    assert sorted(event_ids(read_topic(bootstrap_servers, topic))) == expected  # each sent exactly once


@pytest.mark.integration
def test_a_second_run_moving_the_same_group_meanwhile_stops_this_one_with_one_line(
        pipeline_settings, pipeline_env, bootstrap_servers, pipeline_topics):
    topic, dlq_topic = pipeline_topics
    fill_dead_letter_topic(bootstrap_servers, topic, dlq_topic, 600)
    other = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=redrive_group(pipeline_env),
                          enable_auto_commit=False)
    elsewhere = {TopicPartition(dlq_topic, number): OffsetAndMetadata(1, "", -1) for number in range(3)}

    with pytest.raises(StopConsuming, match="another run is re-driving with group .*run one redrive_dead_letters"):
        redrive_dead_letters(source=topic, dlq_topic=dlq_topic, batch_size=100, progress_every=0,
                             on_progress=lambda summary: other.commit(elsewhere))

    other.close(autocommit=False)
    assert committed_offsets(bootstrap_servers, dlq_topic, redrive_group(pipeline_env)) == {0: 1, 1: 1, 2: 1}
    assert len(read_topic(bootstrap_servers, topic)) <= 200  # this run's batch in hand, at most


@pytest.mark.integration
@pytest.mark.parametrize("setting, value, arguments, message", [
    ("KAFKA_DLQ_TOPIC", "{KAFKA_TOPIC}", (), "KAFKA_DLQ_TOPIC equals KAFKA_TOPIC"),
    ("KAFKA_REDRIVE_GROUP", "{KAFKA_CONSUMER_GROUP}", (), "KAFKA_REDRIVE_GROUP equals KAFKA_CONSUMER_GROUP"),
    (None, None, ("--reason", ""), "--reason must not be empty"),
    ("KAFKA_TOPIC", "activity-{KAFKA_CONSUMER_GROUP}-missing", (), "does not exist or the Kafka user may not describe"),
], ids=["dlq-is-source", "group-is-the-consumers", "empty-reason", "missing-topic"])
def test_a_run_that_cannot_work_as_configured_stops_with_one_line_and_moves_nothing(
        manage, pipeline_env, bootstrap_servers, pipeline_topics, setting, value, arguments, message):
    topic, dlq_topic = pipeline_topics
    send_dead_letters(bootstrap_servers, dlq_topic, dead_letters_of([valid_event()], topic=topic))
    if setting:
        manage.env[setting] = value.format(**pipeline_env)

    result = manage.run(*REDRIVE, *arguments, timeout=120)

    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("CommandError")]
    assert message in line
    assert committed_offsets(bootstrap_servers, dlq_topic, redrive_group(pipeline_env)) == {}
    assert read_topic(bootstrap_servers, topic) == []


@pytest.mark.integration
def test_a_dead_letter_batch_kafka_python_cannot_decode_stops_the_run_with_one_line_after_what_came_before(
        manage, pipeline_env, bootstrap_servers, pipeline_topics):
    topic, dlq_topic = pipeline_topics
    before, after = dead_letters_of([valid_event(), valid_event()], topic=topic)
    send_dead_letters(bootstrap_servers, dlq_topic, [before], partition=0)
    send_dead_letters(bootstrap_servers, dlq_topic, [(b"k", b"{}", [(UndecodableHeaderName("x"), b"v")])], partition=0)
    send_dead_letters(bootstrap_servers, dlq_topic, [after], partition=0)

    result = manage.run(*REDRIVE, timeout=120)

    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("CommandError")]
    assert "cannot decode a record batch" in line and f"move group {redrive_group(pipeline_env)} past it" in line
    assert "0@1" in line and "dead letters re-driven and committed before this: 1" in line
    assert committed_offsets(bootstrap_servers, dlq_topic, redrive_group(pipeline_env)) == {0: 1}
    assert [record.value for record in read_topic(bootstrap_servers, topic)] == [before[1]]


def freeze(server):
    """SIGSTOP a server's process group: its connections stay open and nothing answers on them."""
    os.killpg(os.getpgid(server.process.pid), signal.SIGSTOP)


def thaw(server):
    os.killpg(os.getpgid(server.process.pid), signal.SIGCONT)


@pytest.mark.integration
def test_a_broker_that_stops_answering_mid_run_is_waited_for_and_every_dead_letter_goes_back(
        pipeline_settings, pipeline_env, kafka_broker, bootstrap_servers, pipeline_topics):
    topic, dlq_topic = pipeline_topics
    expected = fill_dead_letter_topic(bootstrap_servers, topic, dlq_topic, 600)
    thawing = []

    def freeze_for_a_while(summary):
        if not thawing:
            freeze(kafka_broker)
            thawing.append(threading.Timer(4, thaw, [kafka_broker]))
            thawing[0].start()

    try:
        summary = redrive_dead_letters(source=topic, dlq_topic=dlq_topic, batch_size=100, progress_every=0,
                                       on_progress=freeze_for_a_while)
    finally:
        thawing[0].join()
        thaw(kafka_broker)

    assert summary.stopped is None and summary.redriven == 600
    assert set(event_ids(read_topic(bootstrap_servers, topic))) == set(expected)
    assert committed_offsets(bootstrap_servers, dlq_topic, redrive_group(pipeline_env)) == \
        ends_of_records(bootstrap_servers, dlq_topic)


@pytest.mark.integration
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # kafka-python's close, then __del__
def test_a_stop_while_the_broker_does_not_answer_ends_the_run_at_once_and_commits_nothing_of_the_batch_in_hand(
        manage, pipeline_settings, pipeline_env, kafka_broker, bootstrap_servers, pipeline_topics):
    topic, dlq_topic = pipeline_topics
    expected = fill_dead_letter_topic(bootstrap_servers, topic, dlq_topic, 600)
    stop, first_batch = threading.Event(), []

    def freeze_then_stop(summary):
        if not first_batch and summary.read:
            first_batch.append(summary.read)
            freeze(kafka_broker)
            threading.Timer(2, stop.set).start()

    try:
        started = time.monotonic()
        summary = redrive_dead_letters(source=topic, dlq_topic=dlq_topic, batch_size=100, progress_every=0,
                                       on_progress=freeze_then_stop, should_stop=stop.is_set)
        stopped_in = time.monotonic() - started
    finally:
        thaw(kafka_broker)

    assert summary.stopped is not None and "not committed and the next run sends them again" in summary.stopped
    assert stopped_in < 30, "a stop is heard within a call's timeout, not a kafka-python default's"
    assert sum(committed_offsets(bootstrap_servers, dlq_topic, redrive_group(pipeline_env)).values()) == first_batch[0]
    redrive(manage)
    assert set(event_ids(read_topic(bootstrap_servers, topic))) == set(expected)


@pytest.mark.integration
@pytest.mark.brokers("kafka")
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_copies_the_broker_does_not_acknowledge_are_not_committed_and_a_stop_meanwhile_leaves_them_to_the_next_run(
        manage, pipeline_settings, pipeline_env, kafka_broker, bootstrap_servers, pipeline_topics, activity_collection):
    """Apache Kafka only (topic deletion): once the source topic is gone, no copy is acknowledged
    (UnknownTopicOrPartition, retriable) while the group's commits still work."""
    topic, dlq_topic = pipeline_topics
    expected = fill_dead_letter_topic(bootstrap_servers, topic, dlq_topic, 600)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    stop, first_batch = threading.Event(), []

    def delete_the_source_then_stop(summary):
        if not first_batch and summary.read:
            first_batch.append(summary.read)
            admin.delete_topics([topic])
            threading.Timer(4, stop.set).start()

    summary = redrive_dead_letters(source=topic, dlq_topic=dlq_topic, batch_size=100, progress_every=0,
                                   on_progress=delete_the_source_then_stop, should_stop=stop.is_set)

    assert f"stopped while re-driving to {topic} was still failing" in (summary.stopped or ""), summary.stopped
    assert sum(committed_offsets(bootstrap_servers, dlq_topic, redrive_group(pipeline_env)).values()) == first_batch[0]
    wait_for(lambda: recreated(admin, topic), timeout=60, message=f"{topic} created again")
    admin.close()
    redrive(manage)
    consume(manage)
    assert set(stored_ids(activity_collection)) - set(expected) == set()  # the first batch went with the topic
    assert len(stored_ids(activity_collection)) == len(expected) - first_batch[0]


def recreated(admin, topic):
    try:
        admin.create_topics([NewTopic(topic, 3, 1)])
        return True
    except TopicAlreadyExistsError:  # still being deleted
        return False
