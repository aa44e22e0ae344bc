"""End to end on the real local broker and database: produce → Kafka → consume → MongoDB.

Every test runs the real management commands as child processes, against its own topics,
consumer group and database on the session's broker (Tansu, then Apache Kafka) and SecantusDB server.
"""

import hashlib
import json
import re
import signal
import uuid

import pytest
from kafka import KafkaProducer
from pymongo import MongoClient

from logs.events import ActivityEvent
from logs.storage.documents import ActivityLog
from stack import processes
from stack.topics import read_topic
from tests.support.broker import committed_offsets, publish
from tests.support.builders import valid_event
from tests.support.commands import CONSUME, consume, produce, stop_once_caught_up, summary
from tests.support.hostile import UndecodableHeaderName
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def stored_events(collection):
    return {document["_id"]: ActivityLog._from_son(document).to_event() for document in collection.find()}


def current_assignment(output):
    """The partition numbers a consumer's log last reported as assigned to it (None before any)."""
    lines = [line for line in output.splitlines() if "assigned partitions:" in line]
    return set(re.findall(r"\[(\d+)\]", lines[-1])) if lines else None


def test_produced_events_are_stored_exactly_once_each_equal_to_what_was_produced(
        manage, pipeline_env, bootstrap_servers, activity_collection):
    produce(manage, 400, seed=11)
    output = consume(manage)

    produced = [ActivityEvent.from_bytes(record.value)
                for record in read_topic(bootstrap_servers, pipeline_env["KAFKA_TOPIC"])]
    assert len(produced) == 400
    stored = stored_events(activity_collection)
    assert activity_collection.count_documents({}) == 400
    assert stored == {event.event_id: event for event in produced}
    assert summary(output) == {"received": 400, "stored": 400, "duplicates": 0, "dead_lettered": 0}


def test_messages_are_keyed_by_user_so_a_users_events_share_a_partition(manage, pipeline_env, bootstrap_servers):
    produce(manage, 300, seed=5)
    partitions_by_user = {}
    for record in read_topic(bootstrap_servers, pipeline_env["KAFKA_TOPIC"]):
        event = ActivityEvent.from_bytes(record.value)
        assert record.key == event.user_id.encode()
        partitions_by_user.setdefault(event.user_id, set()).add(record.partition)
    assert all(len(partitions) == 1 for partitions in partitions_by_user.values())
    assert len({partition for partitions in partitions_by_user.values() for partition in partitions}) > 1


def test_replayed_events_are_stored_once(manage, pipeline_env, bootstrap_servers, activity_collection):
    produce(manage, 300, seed=21)
    consume(manage)
    assert activity_collection.count_documents({}) == 300

    # The same events again: once by re-reading the topic in a new group (offsets reset),
    # once by publishing the very same records a second time (a producer retrying, a replayed backup).
    manage.env["KAFKA_CONSUMER_GROUP"] = f"replay-{uuid.uuid4().hex[:8]}"
    replay = consume(manage)
    assert summary(replay) == {"received": 300, "stored": 0, "duplicates": 300, "dead_lettered": 0}
    publish(bootstrap_servers, pipeline_env["KAFKA_TOPIC"],
              [(record.key, record.value) for record in read_topic(bootstrap_servers, pipeline_env["KAFKA_TOPIC"])])
    again = consume(manage)
    assert summary(again) == {"received": 300, "stored": 0, "duplicates": 300, "dead_lettered": 0}
    assert activity_collection.count_documents({}) == 300


def test_a_reused_event_id_with_other_content_is_dead_lettered_and_the_first_kept(
        manage, pipeline_env, bootstrap_servers, activity_collection):
    # The same seed gives the same eventIds, but the timestamps of the second run differ.
    produce(manage, 50, seed=23)
    consume(manage)
    first = stored_events(activity_collection)
    produce(manage, 50, seed=23)
    output = consume(manage)

    assert summary(output) == {"received": 50, "stored": 0, "duplicates": 0, "dead_lettered": 50}
    assert stored_events(activity_collection) == first
    dead = read_topic(bootstrap_servers, pipeline_env["KAFKA_DLQ_TOPIC"])
    assert {dict(record.headers)["dlq.reason"] for record in dead} == {b"eventId already stored with different content"}
    assert {ActivityEvent.from_bytes(record.value).event_id for record in dead} == set(first)


INVALID_MESSAGES = [
    (b"{not json", "not JSON"),
    (b"\xff\xfe\xfd", "not UTF-8"),
    (json.dumps({"eventId": str(uuid.uuid4()), "userId": "user-1", "action": "withdraw",
                 "timestamp": "2026-11-25T12:00:00Z"}).encode(), "action: must be one of"),
    (json.dumps({"eventId": str(uuid.uuid4()), "userId": "user-1", "action": "send", "amount": 10.5,
                 "currency": "USD", "counterpartyId": "user-2", "transferId": str(uuid.uuid4()),
                 "timestamp": "2026-11-25T12:00:00Z"}).encode(), "amount: must be a decimal string"),
    (json.dumps({"eventId": str(uuid.uuid4()), "userId": "user-1", "action": "balance_inquiry", "balance": "1.00",
                 "timestamp": "2026-11-25T12:00:00Z", "amount": "1.00"}).encode(), "amount: not allowed"),
    (json.dumps({"userId": "user-1", "action": "balance_inquiry", "balance": "1.00",
                 "timestamp": "2026-11-25T12:00:00Z"}).encode(), "eventId: required"),
    (None, "empty message"),
]


def test_invalid_messages_go_to_the_dead_letter_topic_with_their_reason(
        manage, pipeline_env, bootstrap_servers, pipeline_topics, activity_collection):
    valid = [valid_event(f"user-{number}") for number in range(20)]
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers)
    for index, event in enumerate(valid):
        producer.send(pipeline_env["KAFKA_TOPIC"], key=event.key, value=event.to_bytes())
        if index < len(INVALID_MESSAGES):
            producer.send(pipeline_env["KAFKA_TOPIC"], key=b"bad", value=INVALID_MESSAGES[index][0])
    producer.flush()
    producer.close()

    output = consume(manage)

    assert set(stored_events(activity_collection)) == {event.event_id for event in valid}
    dead = read_topic(bootstrap_servers, pipeline_env["KAFKA_DLQ_TOPIC"])
    assert len(dead) == len(INVALID_MESSAGES)
    by_value = {record.value: dict(record.headers) for record in dead}
    for raw, reason in INVALID_MESSAGES:
        headers = by_value[b"" if raw is None else raw]  # the original bytes, unchanged; a null value as empty
        assert headers.get("dlq.original.null") == (b"value" if raw is None else None)
        assert reason in headers["dlq.reason"].decode()
        assert headers["dlq.source.topic"].decode() == pipeline_env["KAFKA_TOPIC"]
        assert headers["dlq.consumer.group"].decode() == pipeline_env["KAFKA_CONSUMER_GROUP"]
    assert all(record.key == b"bad" for record in dead)
    assert summary(output) == {"received": 27, "stored": 20, "duplicates": 0, "dead_lettered": 7}


@pytest.mark.brokers("tansu", "kafka")  # the coordinator expires the killed member's session
def test_a_consumer_killed_mid_run_then_restarted_stores_every_event_once(manage, activity_collection):
    total = 6000
    produce(manage, total, seed=31, rate=5000)
    consumer = manage.start("consume_activity", "--batch-size", "50", "--metrics-port", "0", name="killed-consumer")
    wait_for(lambda: activity_collection.count_documents({}) >= 500, timeout=60, message="the first events stored")
    consumer.send_signal(signal.SIGKILL)
    consumer.wait(10)
    assert activity_collection.count_documents({}) < total, "the consumer finished before it could be killed"

    # The killed member keeps its partitions until its session times out; the restart waits for that.
    output = consume(manage)
    assert activity_collection.count_documents({}) == total
    assert len(activity_collection.distinct("_id")) == total
    after_restart = summary(output)
    assert after_restart["stored"] + after_restart["duplicates"] == after_restart["received"]


def test_a_database_outage_loses_and_duplicates_nothing(manage, tmp_path, log_dir):
    database = processes.database(processes.free_port(), tmp_path / "db", log_dir / "outage-mongodb.log").start()
    try:
        manage.env["MONGODB_URI"] = f"mongodb://{processes.HOST}:{database.port}/outage"
        client = MongoClient(manage.env["MONGODB_URI"], serverSelectionTimeoutMS=2000)
        collection = client.get_default_database()[ActivityLog._meta["collection"]]
        total = 3000
        producer = manage.start("produce_activity", "--rate", "400", "--count", str(total), "--seed", "41",
                                name="outage-producer")
        consumer = manage.start("consume_activity", "--batch-size", "100", "--metrics-port", "0",
                                name="outage-consumer")
        wait_for(lambda: collection.count_documents({}) >= 200, timeout=60, message="events stored before the outage")

        database.stop()
        wait_for(lambda: "writing to MongoDB failed" in consumer.output(), timeout=60,
                 message="the consumer to notice the outage")
        assert consumer.poll() is None, "the consumer died during the outage"
        database.start()

        assert producer.wait(60) == 0, producer.output()
        stop_once_caught_up(manage, consumer)
        assert collection.count_documents({}) == total
        assert len(collection.distinct("_id")) == total
        assert "retrying in" in consumer.output()
    finally:
        database.stop()


@pytest.mark.brokers("tansu", "kafka")  # the group coordinator splits the partitions
def test_two_consumers_in_one_group_share_the_partitions_and_store_each_event_once(manage, activity_collection):
    total = 3000
    first = manage.start("consume_activity", "--metrics-port", "0", name="consumer-a")
    second = manage.start("consume_activity", "--metrics-port", "0", name="consumer-b")

    def split_between_both():
        a, b = current_assignment(first.output()), current_assignment(second.output())
        return a and b and not a & b and len(a | b) == 3

    wait_for(split_between_both, timeout=90, message="the group to split the 3 partitions between both consumers")
    produce(manage, total, seed=51, rate=1000)
    stop_once_caught_up(manage, first, second)

    assert activity_collection.count_documents({}) == total
    assert len(activity_collection.distinct("_id")) == total
    totals = [summary(child.output()) for child in (first, second)]
    assert sum(each["stored"] for each in totals) == total
    assert all(each["stored"] > 0 for each in totals), totals


@pytest.mark.brokers("tansu", "kafka")  # the coordinator keeps the commit for the next member
def test_sigterm_stops_the_consumer_cleanly_after_committing(manage, activity_collection):
    produce(manage, 200, seed=61)
    consumer = manage.start("consume_activity", "--metrics-port", "0", name="sigterm-consumer")
    wait_for(lambda: activity_collection.count_documents({}) == 200, timeout=60, message="all events stored")
    wait_for(lambda: "received 200" in consumer.output() or consumer.poll() is not None, timeout=15,
             message="the batch to be committed")
    consumer.send_signal(signal.SIGTERM)
    assert consumer.wait(30) == 0, consumer.output()
    assert "stopped by SIGTERM" in consumer.output()

    # Everything was committed: the same group finds nothing left to read.
    assert summary(consume(manage))["received"] == 0


def test_ctrl_c_stops_the_producer_after_flushing_what_it_sent(manage, pipeline_env, bootstrap_servers):
    producer = manage.start("produce_activity", "--rate", "50", name="sigint-producer")
    wait_for(lambda: re.search(r"acknowledged [1-9]\d*,", producer.output()), timeout=30, message="a progress line")
    producer.send_signal(signal.SIGINT)
    assert producer.wait(30) == 0, producer.output()
    acknowledged = int(re.search(r"stopped by SIGINT\): (\d+) events acknowledged", producer.output())[1])
    assert len(read_topic(bootstrap_servers, pipeline_env["KAFKA_TOPIC"])) == acknowledged > 0


def test_an_unreachable_broker_gives_one_clear_error_and_a_non_zero_exit(manage):
    manage.env["KAFKA_BOOTSTRAP_SERVERS"] = f"{processes.HOST}:{processes.free_port()}"
    result = manage.run("produce_activity", "--count", "1", timeout=60)
    assert result.returncode != 0
    assert "cannot reach Kafka at" in result.stderr and "make services" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.brokers("tansu", "kafka")  # each broker comes up in a way of its own
def test_a_consumer_started_before_the_broker_waits_for_it_then_consumes(manage, log_dir, tmp_path, broker_kind,
                                                                         activity_collection):
    port = processes.free_port()
    manage.env["KAFKA_BOOTSTRAP_SERVERS"] = f"{processes.HOST}:{port}"
    consumer = manage.start("consume_activity", "--metrics-port", "0", name="early-consumer")
    wait_for(lambda: "connecting to Kafka failed" in consumer.output(), timeout=60,
             message="the consumer to report the missing broker")
    assert consumer.poll() is None, consumer.output()

    broker = processes.broker(port, log_dir / f"late-broker-{broker_kind}.log", kind=broker_kind,
                              data_dir=tmp_path / "broker").start()
    try:
        produce(manage, 100, seed=71)
        stop_once_caught_up(manage, consumer)
        assert activity_collection.count_documents({}) == 100
        assert "make services" in consumer.output()  # the wait says what to do
    finally:
        broker.stop()


HOSTILE_MESSAGES = [
    b'{"eventId":"2d8f4f60-5e3c-4f90-9c77-4b3b2e1f0a93","userId":"u","action":"balance_inquiry","balance":"1.00",'
    b'"timestamp":"9999-12-31T23:59:59-01:00"}',
    b'{"n":' + b"9" * 5000 + b"}",
    b"[" * 5000 + b"]" * 5000,
    b'{"eventId":["x"],"userId":{"a":1},"action":["send"],"timestamp":7}',
    b'{"\\ud800":"\\udfff"}',
    b'{"eventId":"2d8f4f60-5e3c-4f90-9c77-4b3b2e1f0a94","userId":"u","action":"balance_inquiry",'
    b'"balance":"\xd9\xa1\xd9\xa2.00","timestamp":"2026-11-25T12:00:00Z"}',
    b'{"x":NaN}',
    b'{"action":"send","action":"receive"}',
    b"\xef\xbb\xbf{}",
]


def test_hostile_records_interleaved_with_valid_ones_are_dead_lettered_and_the_rest_stored_once(
        manage, pipeline_env, bootstrap_servers, pipeline_topics, activity_collection):
    valid = [valid_event(f"user-{number}") for number in range(30)]
    forged_headers = [("dlq.reason", b"forged"), ("dlq.source.offset", b"-1")]
    records = []
    for index, event in enumerate(valid):
        records.append((event.key, event.to_bytes()))
        if index < len(HOSTILE_MESSAGES):
            records.append((b"\xff" * index, HOSTILE_MESSAGES[index], forged_headers))
    publish(bootstrap_servers, pipeline_env["KAFKA_TOPIC"], records)

    output = consume(manage)

    assert stored_events(activity_collection) == {event.event_id: event for event in valid}
    dead = read_topic(bootstrap_servers, pipeline_env["KAFKA_DLQ_TOPIC"])
    assert sorted(record.value for record in dead) == sorted(HOSTILE_MESSAGES)
    for record in dead:
        reasons = [value for name, value in record.headers if name == "dlq.reason"]
        assert len(reasons) == 1 and reasons[0] != b"forged"
        assert [value for name, value in record.headers if name == "dlq.source.offset"] != [b"-1"]
    assert summary(output) == {"received": 39, "stored": 30, "duplicates": 0, "dead_lettered": 9}


@pytest.mark.brokers("tansu", "kafka")  # 400 kB: each broker's own size limits
def test_an_invalid_record_too_large_for_a_dead_letter_copy_is_cut_and_the_partition_moves_on(
        manage, pipeline_env, bootstrap_servers, pipeline_topics, activity_collection):
    manage.env["KAFKA_DLQ_MAX_RECORD_BYTES"] = "100000"
    oversized = b'{"junk":"' + b"x" * 400_000 + b'"}'
    after = valid_event("user-after")
    publish(bootstrap_servers, pipeline_env["KAFKA_TOPIC"],
            [(after.key, oversized), (after.key, after.to_bytes())])  # one key: one partition, in this order

    output = consume(manage)

    assert set(stored_events(activity_collection)) == {after.event_id}
    [dead] = read_topic(bootstrap_servers, pipeline_env["KAFKA_DLQ_TOPIC"])
    headers = dict(dead.headers)
    assert len(dead.value) < 100_000 and oversized.startswith(dead.value)
    assert headers["dlq.original.size"] == str(len(oversized)).encode()
    assert headers["dlq.original.sha256"] == hashlib.sha256(oversized).hexdigest().encode()
    assert headers["dlq.reason"].startswith(b"too large")
    assert summary(output)["dead_lettered"] == 1


@pytest.mark.parametrize("setting, value, message", [
    ("KAFKA_DLQ_TOPIC", None, "KAFKA_DLQ_TOPIC equals KAFKA_TOPIC"),
    ("MONGODB_URI", "mongodb://nobody:wrong@{host}:{port}/denied", "refused the credentials"),
    ("KAFKA_DLQ_TOPIC", "not a valid topic name!", "not a legal Kafka topic name"),
])
def test_a_configuration_error_stops_the_consumer_at_once_with_one_line_and_commits_nothing(
        manage, pipeline_env, mongodb_server, bootstrap_servers, setting, value, message):
    produce(manage, 20, seed=81)
    manage.env[setting] = (pipeline_env["KAFKA_TOPIC"] if value is None
                           else value.format(host=processes.HOST, port=mongodb_server.port))
    result = manage.run(*CONSUME, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr + result.stdout
    assert len([line for line in result.stderr.splitlines() if line.startswith("CommandError")]) == 1
    assert committed_offsets(bootstrap_servers, pipeline_env["KAFKA_TOPIC"], pipeline_env["KAFKA_CONSUMER_GROUP"]) == {}


def test_a_document_the_database_refuses_is_dead_lettered_with_its_reason_and_the_rest_stored(
        manage, pipeline_env, bootstrap_servers, pipeline_topics, mongodb_uri):
    # A server-side validator (as an operator might add) that refuses one user's logs for good.
    with MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000) as client:
        database = client.get_default_database()
        database.create_collection(ActivityLog._meta["collection"], validator={"userId": {"$ne": "user-refused"}})
        valid = [valid_event(f"user-{number}") for number in range(10)]
        refused = valid_event("user-refused")
        publish(bootstrap_servers, pipeline_env["KAFKA_TOPIC"],
                  [(event.key, event.to_bytes()) for event in [*valid[:5], refused, *valid[5:]]])

        output = consume(manage)

        stored = database[ActivityLog._meta["collection"]]
        assert sorted(document["_id"] for document in stored.find()) == sorted(event.event_id for event in valid)
    [dead] = read_topic(bootstrap_servers, pipeline_env["KAFKA_DLQ_TOPIC"])
    assert dead.value == refused.to_bytes()
    assert dict(dead.headers)["dlq.reason"].startswith(b"refused by MongoDB: code 121")
    assert summary(output) == {"received": 11, "stored": 10, "duplicates": 0, "dead_lettered": 1}


def produce_a_record_with_a_header_name_that_is_not_utf8(bootstrap_servers, topic):
    """On partition 0: a valid event (offset 0), then in one batch the hostile record (offset 1) between
    valid events (2, 3), then a valid event in a batch of its own (4). Returns the valid events."""
    before, *same_batch, after = [valid_event("user-1") for _ in range(4)]
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=200)
    producer.send(topic, partition=0, key=before.key, value=before.to_bytes())
    producer.flush()
    producer.send(topic, partition=0, key=b"hostile", value=b"{}", headers=[(UndecodableHeaderName("x"), b"v")])
    for event in same_batch:
        producer.send(topic, partition=0, key=event.key, value=event.to_bytes())
    producer.flush()
    producer.send(topic, partition=0, key=after.key, value=after.to_bytes())
    producer.flush()
    producer.close()
    return [before, *same_batch, after]


@pytest.mark.brokers("tansu", "kafka")  # the batch read again as each broker serves it
def test_a_record_with_a_header_name_that_is_not_utf8_is_dead_lettered_and_the_partition_moves_on(
        manage, pipeline_env, bootstrap_servers, pipeline_topics, activity_collection):
    topic = pipeline_env["KAFKA_TOPIC"]
    valid = produce_a_record_with_a_header_name_that_is_not_utf8(bootstrap_servers, topic)

    output = consume(manage)

    assert stored_events(activity_collection) == {event.event_id: event for event in valid}
    dead = read_topic(bootstrap_servers, pipeline_env["KAFKA_DLQ_TOPIC"])
    assert [(record.key, record.value) for record in dead] == [(b"hostile", b"{}")]
    headers = {name: value for name, value in dead[0].headers if name.startswith("dlq.")}
    assert b"header" in headers["dlq.reason"]
    assert (headers["dlq.source.topic"], headers["dlq.source.partition"], headers["dlq.source.offset"]) == (
        topic.encode(), b"0", b"1")
    assert summary(output) == {"received": 5, "stored": 4, "duplicates": 0, "dead_lettered": 1}
    assert committed_offsets(bootstrap_servers, topic, pipeline_env["KAFKA_CONSUMER_GROUP"])[0] == 5
