"""The consumer's stages, one at a time (the whole chain runs end to end in test_pipeline.py)."""

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from kafka.errors import KafkaTimeoutError, RebalanceInProgressError, TopicAuthorizationFailedError
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.structs import TopicPartition
from pymongo.errors import AutoReconnect, BulkWriteError, NetworkTimeout, OperationFailure

from logs.events import ActivityEvent
from logs.pipeline.consuming import GroupListener, Ingestor, Interrupted, retry_until_done
from logs.pipeline.failures import TRANSIENT_SERVER_CODES, Rejected, StopConsuming, Transient, classify
from logs.pipeline.ingestion import (
    CONFLICTING_CONTENT,
    WriteOutcome,
    build_documents,
    dead_letter_record,
    decode_records,
    offsets_to_commit,
    write_documents,
)
from logs.storage.documents import DIGEST_FIELD, ActivityLog
from tests.support.builders import pipeline


@dataclass
class Record:
    """The fields of a kafka-python ConsumerRecord that ingestion reads."""

    value: bytes | None
    partition: int = 0
    offset: int = 0
    topic: str = "activity"
    key: bytes | None = None
    headers: list | None = None
    timestamp: int = int(datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc).timestamp() * 1000)


def event(**changes):
    fields = {"event_id": str(uuid.uuid4()), "user_id": "user-1", "action": "send",
              "timestamp": datetime(2026, 11, 25, 10, 0, 0, 250000, tzinfo=timezone.utc),
              "amount_cents": 1250, "currency": "USD", "counterparty_id": "user-2", "transfer_id": str(uuid.uuid4())}
    return ActivityEvent(**{**fields, **changes})


def test_decoding_splits_valid_events_from_rejects_with_reasons():
    good = event()
    records = [Record(good.to_bytes(), offset=1), Record(b"{", offset=2), Record(None, offset=3)]
    accepted, rejected = decode_records(records, max_clock_skew_seconds=300)
    assert [(record.offset, parsed) for record, parsed in accepted] == [(1, good)]
    assert [(reject.record.offset, reject.reason.split(":")[0]) for reject in rejected] == [
        (2, "not JSON"), (3, "empty message (null value)")]


def test_decoding_judges_each_record_by_its_key_and_timestamp_too():
    good = event()  # dated 2026-11-25T10:00:00.250Z
    early = Record(b"", timestamp=int(datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc).timestamp() * 1000))
    accepted, rejected = decode_records([
        Record(good.to_bytes(), key=b"user-1", offset=1), Record(good.to_bytes(), key=b"user-2", offset=2),
        Record(good.to_bytes(), timestamp=early.timestamp, offset=3)], max_clock_skew_seconds=300)
    assert [record.offset for record, _ in accepted] == [1]
    assert [(reject.record.offset, reject.reason.split(":")[0]) for reject in rejected] == [
        (2, "key does not match userId"), (3, "timestamp in the future")]
    assert decode_records([Record(good.to_bytes(), timestamp=early.timestamp)], max_clock_skew_seconds=3601)[0]


def test_documents_carry_the_event_in_stored_field_names_and_cents():
    original = event()
    [document] = build_documents([(Record(original.to_bytes(), partition=2, offset=41), original)])
    assert document["_id"] == original.event_id and "eventId" not in document and document["userId"] == "user-1"
    assert len(document[DIGEST_FIELD]) == 32
    assert document["amountCents"] == 1250 and "balanceCents" not in document
    assert (document["kafkaPartition"], document["kafkaOffset"]) == (2, 41)
    assert ActivityLog._from_son(document).to_event() == original


def test_offsets_to_commit_are_one_past_the_last_record_of_each_partition():
    records = [Record(b"", partition=0, offset=5), Record(b"", partition=1, offset=9),
               Record(b"", partition=0, offset=7)]
    offsets = offsets_to_commit(records)
    assert {partition: meta.offset for partition, meta in offsets.items()} == {
        TopicPartition("activity", 0): 8, TopicPartition("activity", 1): 10}


@pytest.mark.integration
def test_writing_the_same_events_again_stores_nothing_new(activity_collection):
    ActivityLog.ensure_indexes()
    events = [event() for _ in range(5)]
    first = build_documents([(Record(b""), each) for each in events[:3]])
    assert write_documents(activity_collection, first) == WriteOutcome(stored=3)
    # A replay rebuilds the documents from the same events, mixed with events not seen before.
    replay = build_documents([(Record(b""), each) for each in events])
    assert write_documents(activity_collection, replay) == WriteOutcome(stored=2, duplicates=3)
    assert write_documents(activity_collection, replay) == WriteOutcome(duplicates=5)
    assert activity_collection.count_documents({}) == 5
    assert write_documents(activity_collection, []) == WriteOutcome()


@pytest.mark.integration
def test_a_reused_event_id_with_other_content_is_refused_and_the_rest_stored(activity_collection):
    original, other = event(), event()
    write_documents(activity_collection, build_documents([(Record(b""), original)]))
    impostor = event(event_id=original.event_id, amount_cents=999_00)
    fresh = event()
    documents = build_documents([(Record(b""), each) for each in (impostor, other, fresh)])
    assert write_documents(activity_collection, documents) == WriteOutcome(
        stored=2, refused=[(0, CONFLICTING_CONTENT)])
    assert ActivityLog._from_son(activity_collection.find_one({"_id": original.event_id})).to_event() == original


@pytest.mark.integration
def test_a_replay_of_a_log_stored_without_a_digest_is_still_told_from_a_conflict(activity_collection):
    original = event()
    [document] = build_documents([(Record(b""), original)])
    del document[DIGEST_FIELD]
    activity_collection.insert_one(document)
    again = build_documents([(Record(b""), original), (Record(b""), event(event_id=original.event_id, currency="EUR"))])
    assert write_documents(activity_collection, again) == WriteOutcome(duplicates=1, refused=[(1, CONFLICTING_CONTENT)])


class FailingCollection:
    """Stands in for a collection only to shape a BulkWriteError the local database cannot produce."""

    def __init__(self, details):
        self.details = details

    def bulk_write(self, operations, ordered):
        raise BulkWriteError(self.details)

    def find(self, query):
        return []


def test_a_transient_write_error_fails_the_batch_for_a_retry():
    details = {"nInserted": 1, "writeErrors": [{"index": 1, "code": 11000, "errmsg": "dup"},
                                                {"index": 2, "code": 91, "errmsg": "shutting down"}]}
    with pytest.raises(Transient, match="code 91"):
        write_documents(FailingCollection(details), [{"_id": 1}, {"_id": 2}, {"_id": 3}])
    concern = {"nInserted": 3, "writeErrors": [], "writeConcernErrors": [{"code": 64, "errmsg": "timeout"}]}
    with pytest.raises(Transient, match="code 64"):
        write_documents(FailingCollection(concern), [{"_id": 1}])


def test_a_document_the_server_will_never_accept_is_refused_with_the_servers_reason():
    details = {"nInserted": 2, "writeErrors": [{"index": 1, "code": 121, "errmsg": "Document failed validation"}]}
    outcome = write_documents(FailingCollection(details), [{"_id": 1}, {"_id": 2}, {"_id": 3}])
    assert outcome == WriteOutcome(stored=2, refused=[(1, "refused by MongoDB: code 121: Document failed validation")])


def test_transient_failures_are_retried_with_capped_exponential_backoff():
    attempts, waits = [], []

    def flaky():
        attempts.append(1)
        if len(attempts) < 8:
            raise Transient("connection refused")
        return "stored"

    assert retry_until_done(flaky, what="writing", should_stop=lambda: False, wait=waits.append, max_delay=4,
                            jitter=lambda: 1.0) == "stored"
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    waits.clear(), attempts.clear()
    retry_until_done(flaky, what="writing", should_stop=lambda: False, wait=waits.append, max_delay=4,
                     jitter=lambda: 0.0)
    assert waits == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert len(attempts) == 8


def test_a_stop_request_during_retries_leaves_the_operation_undone():
    def down():
        raise Transient("down")

    with pytest.raises(Interrupted):
        retry_until_done(down, what="writing", should_stop=lambda: True, wait=lambda seconds: None)


def test_errors_that_are_not_transient_are_not_retried():
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        retry_until_done(broken, what="writing", should_stop=lambda: False, wait=lambda seconds: None)
    assert len(calls) == 1


def test_a_dead_letter_copy_carries_the_original_and_the_consumers_own_headers():
    forged = Record(b"{bad", partition=2, offset=7, key=b"user-1",
                    headers=[("trace", b"abc"), ("dlq.reason", b"forged: all fine"), ("dlq.source.offset", b"0")])
    key, value, headers = dead_letter_record(Rejected(forged, "not JSON: \ud800 " + "x" * 5000), group="g",
                                             max_bytes=900_000)
    assert (key, value) == (b"user-1", b"{bad")
    named = dict(headers)
    assert [name for name, _ in headers].count("dlq.reason") == 1 and named["trace"] == b"abc"
    assert named["dlq.reason"].decode().startswith("not JSON: \\ud800") and len(named["dlq.reason"].decode()) <= 1000
    assert (named["dlq.source.partition"], named["dlq.source.offset"], named["dlq.consumer.group"]) == (
        b"2", b"7", b"g")
    assert "dlq.original.truncated" not in named


def sent_as_kafka_python_would(copy):
    """The checks kafka-python's producer makes of a record before sending it (those that crashed the consumer:
    a null key with a null value, a header value that is not bytes); the integration tests send them for real."""
    key, value, headers = copy
    assert key is not None or value is not None, "Need at least one: key or value"
    assert all(isinstance(name, str) and isinstance(data, bytes) for name, data in headers), headers
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)


@pytest.mark.parametrize("key, value, headers, marked, sent_value, sent_headers", [
    (None, None, [], b"value", b"", []),
    (b"user-1", None, [], b"value", b"", []),  # a tombstone
    (None, b"{", [("trace", None), ("dlq.reason", None), ("span", b"s"), ("empty", None)], b"header:0,header:2",
     b"{", [("trace", b""), ("span", b"s"), ("empty", b"")]),
    (None, None, [("trace", None)], b"value,header:0", b"", [("trace", b"")]),
    (b"", b"", [("trace", b"")], None, b"", [("trace", b"")]),  # empty is not null, and says so by having no mark
])
def test_a_dead_letter_copy_of_nulls_can_always_be_sent_and_says_what_was_null(key, value, headers, marked,
                                                                                sent_value, sent_headers):
    copy = dead_letter_record(Rejected(Record(value, key=key, headers=headers), "empty message (null value)"),
                              group="g", max_bytes=900_000)
    assert sent_as_kafka_python_would(copy)
    sent_key, sent, sent_all = copy
    assert (sent_key, sent) == (key, sent_value)
    assert [header for header in sent_all if not header[0].startswith("dlq.")] == sent_headers
    assert dict(sent_all).get("dlq.original.null") == marked


def test_a_cut_copy_of_a_record_with_null_headers_marks_them_or_drops_them_with_the_headers():
    kept = Record(b"[" * 300_000, headers=[("trace", None)])
    _, _, headers = dead_letter_record(Rejected(kept, "too large"), group="g", max_bytes=100_000)
    assert dict(headers)["dlq.original.null"] == b"header:0" and dict(headers)["trace"] == b""
    dropped = Record(None, key=b"k", headers=[("trace", None), ("big", b"x" * 20_000)])
    copy = dead_letter_record(Rejected(dropped, "r"), group="g", max_bytes=10_000)
    assert sent_as_kafka_python_would(copy) and dict(copy[2])["dlq.original.null"] == b"value"
    assert "trace" not in dict(copy[2])


def test_a_record_left_uninflated_is_dead_lettered_by_reference():
    from logs.pipeline.record_batches import Uninflated

    prefix = Record(b"\0" * 1024, key=b"user-1", partition=1, offset=9)
    key, value, headers = dead_letter_record(Rejected(prefix, "record of 209715245 bytes inflates past",
                                                      uninflated=Uninflated(209_715_245, 6123)), group="g",
                                             max_bytes=900_000)
    named = dict(headers)
    assert (key, value) == (b"user-1", b"\0" * 1024)
    assert (named["dlq.original.size"], named["dlq.original.batch.compressed.size"]) == (b"209715245", b"6123")
    assert named["dlq.original.truncated"] == b"true" and "dlq.original.sha256" not in named
    assert (named["dlq.source.partition"], named["dlq.source.offset"]) == (b"1", b"9")


def test_a_dead_letter_copy_of_a_record_too_large_is_cut_to_fit_with_its_size_and_hash():
    original = b"[" * 300_000
    big = Record(original, key=b"k" * 5000, headers=[("h", b"v" * 100)], offset=3)
    key, value, headers = dead_letter_record(Rejected(big, "too large"), group="g", max_bytes=100_000)
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers) <= 100_000
    named = dict(headers)
    assert original.startswith(value) and len(value) > 90_000
    assert named["dlq.original.size"] == b"300000"
    assert named["dlq.original.sha256"] == hashlib.sha256(original).hexdigest().encode()
    assert len(key) == 1024 and named["h"] == b"v" * 100


@pytest.mark.parametrize("attempt, carried", [
    (b"1", b"1"), (b"42", b"42"), (b"999", b"999"),
    (b"0", None), (b"01", None), (b"-1", None), (b"1000", None), (b"+3", None), (b" 3", None), (b"\xd9\xa3", None),
    (b"x", None), (None, None),
], ids=repr)
def test_a_dead_letter_copy_carries_a_well_formed_redrive_count_over_and_drops_any_other(
        attempt, carried):
    _, _, headers = dead_letter_record(Rejected(Record(b"{", headers=[("dlq.redrive.attempt", attempt)]), "not JSON"),
                                       group="g", max_bytes=900_000)
    assert [value for name, value in headers if name == "dlq.redrive.attempt"] == ([carried] if carried else [])


def test_a_dead_letter_copy_drops_a_repeated_redrive_count():
    repeated = Record(b"{", headers=[("dlq.redrive.attempt", b"1"), ("dlq.redrive.attempt", b"2")])
    _, _, headers = dead_letter_record(Rejected(repeated, "not JSON"), group="g", max_bytes=900_000)
    assert "dlq.redrive.attempt" not in dict(headers)


def test_a_cut_dead_letter_copy_keeps_the_redrive_count():
    original = Record(b"[" * 300_000, headers=[("dlq.redrive.attempt", b"2")])
    _, _, headers = dead_letter_record(Rejected(original, "too large"), group="g", max_bytes=100_000)
    assert dict(headers)["dlq.redrive.attempt"] == b"2" and dict(headers)["dlq.original.truncated"] == b"true"


def test_errors_are_classified_by_what_the_driver_says_about_them():
    assert isinstance(classify(AutoReconnect("gone"), what="w"), Transient)
    assert isinstance(classify(NetworkTimeout("slow"), what="w"), Transient)
    assert isinstance(classify(OperationFailure("stepped down", code=189), what="w"), Transient)
    labelled = OperationFailure("x", code=999, details={"errorLabels": ["RetryableWriteError"]})
    assert isinstance(classify(labelled, what="w"), Transient)
    assert isinstance(classify(OperationFailure("authentication failed", code=18), what="w"), StopConsuming)
    assert isinstance(classify(KafkaTimeoutError(), what="w"), Transient)
    assert isinstance(classify(TopicAuthorizationFailedError(), what="w"), StopConsuming)
    assert classify(ValueError("a bug"), what="w") is None


def test_every_code_pymongo_retries_is_transient_here():
    from pymongo import helpers_shared

    assert helpers_shared._RETRYABLE_ERROR_CODES <= TRANSIENT_SERVER_CODES


class IngestorFailingAtFinish:
    def __init__(self, failure):
        self.failure = failure

    def finish(self, *, commit):
        raise self.failure


@pytest.mark.parametrize("failure", [Interrupted("writing to MongoDB"), StopConsuming("denied")])
def test_a_failure_of_the_batch_in_flight_during_a_rebalance_is_kept_for_the_loop_to_raise(failure):
    # kafka-python logs and swallows what a rebalance listener raises; the loop raises it after its poll.
    listener = GroupListener(IngestorFailingAtFinish(failure))
    listener.on_partitions_revoked({TopicPartition("activity", 0)})
    assert listener.failure is failure
    listener.on_partitions_revoked(set())  # nothing revoked: nothing to finish


def test_a_broker_that_refuses_the_client_stops_the_consumer_and_one_still_starting_is_waited_for(monkeypatch):
    from kafka.errors import SaslAuthenticationFailedError

    from logs.management.commands import consume_activity
    from logs.pipeline.broker import BrokerUnavailable

    def refusing(error):
        def ensure_topics(*names):
            raise BrokerUnavailable("cannot reach Kafka") from error
        return ensure_topics

    monkeypatch.setattr(consume_activity, "ensure_topics", refusing(SaslAuthenticationFailedError("bad password")))
    with pytest.raises(StopConsuming, match="bad password"):
        consume_activity.ensure_topics_or_wait("activity", "activity.dlq")
    monkeypatch.setattr(consume_activity, "ensure_topics", refusing(KafkaTimeoutError("no broker yet")))
    with pytest.raises(Transient):
        consume_activity.ensure_topics_or_wait("activity", "activity.dlq")


class RecordingIngestor:
    def __init__(self):
        self.commits = []

    def finish(self, *, commit):
        self.commits.append(commit)


def test_a_rebalance_finishes_the_batch_in_flight_without_committing_from_the_listener():
    # kafka-python 3 refuses a blocking commit on its IO thread, where listeners run.
    ingestor = RecordingIngestor()
    listener = GroupListener(ingestor)
    listener.on_partitions_lost({TopicPartition("activity", 0)})
    listener.on_partitions_revoked({TopicPartition("activity", 1)})
    listener.on_partitions_revoked(set())
    assert ingestor.commits == [False, False] and listener.failure is None


class CommitRecordingConsumer:
    """The one call `Ingestor` makes on the Kafka consumer when it commits: each commit kept as {partition: offset}."""

    def __init__(self):
        self.commits = []

    def commit(self, offsets):
        self.commits.append({partition.partition: meta.offset for partition, meta in offsets.items()})


class AcceptingCollection:
    def bulk_write(self, operations, ordered):
        return type("Result", (), {"inserted_count": len(operations)})()

    insert_many = bulk_write


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def ingestor_over(consumer):
    """An Ingestor over `consumer` and a collection that stores everything, on a clock the test moves:
    (ingestor, consumer, clock)."""
    clock = Clock()
    return (Ingestor(pipeline(consumer, collection=AcceptingCollection()), should_stop=lambda: False,
                     commit_every=5.0, clock=clock), consumer, clock)


@pytest.fixture
def committing():
    """`ingestor_over` a consumer that records its commits."""
    ingestor, consumer, clock = ingestor_over(CommitRecordingConsumer())
    yield ingestor, consumer, clock
    ingestor.close()


def batch(partition, *offsets):
    return [Record(event().to_bytes(), partition=partition, offset=offset) for offset in offsets]


def test_batches_done_within_the_commit_interval_are_committed_together_and_all_of_them_when_asked(committing):
    ingestor, consumer, clock = committing
    ingestor.ingest(batch(0, 0, 1))
    ingestor.ingest(batch(1, 0))
    ingestor.ingest(batch(0, 2, 3))  # the two batches before it are done, the interval is not over
    assert consumer.commits == []
    clock.now = 5.0
    ingestor.ingest(batch(1, 1))  # the interval is over: what is done so far, each partition's latest
    assert consumer.commits == [{0: 4, 1: 1}]
    clock.now = 6.0
    ingestor.ingest(batch(2, 7))
    assert consumer.commits == [{0: 4, 1: 1}]
    ingestor.finish(now=True)  # a poll found nothing new, or a stop: everything done is committed
    assert consumer.commits == [{0: 4, 1: 1}, {1: 2, 2: 8}]
    assert ingestor.totals.stored == 7


def test_a_rebalance_drops_the_offsets_not_committed_yet_for_the_partitions_next_owner_to_read_again(committing):
    ingestor, consumer, _ = committing
    ingestor.ingest(batch(0, 0, 1))
    ingestor.ingest(batch(0, 2))
    ingestor.finish(commit=False)  # as the listener does when partitions are revoked
    ingestor.finish(now=True)
    assert consumer.commits == []
    assert ingestor.totals.stored == 3


class RebalancingConsumer(CommitRecordingConsumer):
    """Refuses commits as kafka-python does while its member is between generations, until `rebalancing` is
    False."""

    rebalancing = True

    def commit(self, offsets):
        if self.rebalancing:
            raise RebalanceInProgressError("the consumer is undergoing a rebalance")
        super().commit(offsets)


@pytest.fixture
def rebalancing():
    """`ingestor_over` a consumer whose commits a rebalance refuses until the test ends it."""
    ingestor, consumer, _ = ingestor_over(RebalancingConsumer())
    yield ingestor, consumer
    ingestor.close()


def test_offsets_a_rebalance_refuses_wait_for_the_next_commit_and_are_said_once(rebalancing, caplog):
    ingestor, consumer = rebalancing
    ingestor.ingest(batch(0, 0, 1))
    ingestor.finish(now=True)
    ingestor.ingest(batch(1, 0))
    ingestor.finish(now=True)
    assert [record.message for record in caplog.records if "rebalancing" in record.message] == [
        "the group is rebalancing: the commit of activity[0] waits until it is done; if the partitions move, their "
        "next owner reads those events again and skips them as replays"]
    consumer.rebalancing = False
    ingestor.finish(now=True)
    assert consumer.commits == [{0: 2, 1: 1}]


def test_offsets_a_rebalance_refuses_are_dropped_when_the_partitions_are_revoked(rebalancing):
    ingestor, consumer = rebalancing
    ingestor.ingest(batch(0, 0, 1))
    ingestor.finish(now=True)
    ingestor.finish(commit=False)  # as the listener does when partitions are revoked
    consumer.rebalancing = False
    ingestor.ingest(batch(1, 0))
    ingestor.finish(now=True)
    assert consumer.commits == [{1: 1}]
