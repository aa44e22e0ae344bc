"""What only a broker that keeps its data can show, on Apache Kafka (issue #7.3).

On the session's Apache Kafka, except where a test stops the broker: that one has an Apache Kafka of its
own, on its own data folder (`durable_broker`), and `make services` runs its own. TEST_BROKERS without
`kafka` deselects them (a quick local run).
"""

import signal
import subprocess
import sys
import time

import pytest
from kafka import KafkaAdminClient
from kafka.errors import MessageSizeTooLargeError
from pymongo import MongoClient

from logs.storage.documents import ActivityLog
from stack import processes
from stack.topics import end_offsets, read_topic
from tests.support import ROOT
from tests.support.broker import committed_offsets
from tests.support.commands import consume
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.brokers("kafka")]

OUTAGE_SECONDS = 10


@pytest.fixture
def durable_broker(log_dir, tmp_path):
    """An Apache Kafka of the test's own, which it may stop and start again on the same data."""
    server = processes.broker(processes.free_port(), log_dir / f"durable-kafka-{tmp_path.name}.log", kind="kafka",
                              data_dir=tmp_path / "kafka").start()
    yield server
    server.kill()


def stored_exactly_once(collection, total):
    assert collection.count_documents({}) == total
    assert len(collection.distinct("_id")) == total


def group_members(bootstrap_servers, group):
    """How many members the group has, as its coordinator describes it."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        return len(admin.describe_groups([group])[group]["members"])
    finally:
        admin.close()


def stop_once_all_stored(consumer, collection, total):
    """Wait until `total` events are stored, then stop the consumer as an operator would (SIGTERM).

    Not --idle-timeout: a broker outage is also a time without events.
    """
    wait_for(lambda: collection.count_documents({}) >= total or consumer.poll() is not None, timeout=240,
             message=f"all {total} events stored")
    consumer.send_signal(signal.SIGTERM)
    assert consumer.wait(60) == 0, consumer.output()


def test_a_broker_stopped_for_ten_seconds_mid_run_loses_and_duplicates_nothing(
        manage, durable_broker, activity_collection):
    manage.env["KAFKA_BOOTSTRAP_SERVERS"] = f"{processes.HOST}:{durable_broker.port}"
    total = 3000
    producer = manage.start("produce_activity", "--rate", "150", "--count", str(total), "--seed", "91",
                            name="outage-producer")
    consumer = manage.start("consume_activity", "--batch-size", "100", "--metrics-port", "0", name="outage-consumer")
    wait_for(lambda: activity_collection.count_documents({}) >= 300, timeout=90,
             message="events stored before the outage")

    durable_broker.stop()
    # Not a wait for something to happen: the outage itself, of the length the test is about.
    time.sleep(OUTAGE_SECONDS)
    assert producer.poll() is None, producer.output()
    assert consumer.poll() is None, consumer.output()
    durable_broker.start()

    assert producer.wait(180) == 0, producer.output()
    stop_once_all_stored(consumer, activity_collection, total)
    stored_exactly_once(activity_collection, total)
    assert "has acknowledged nothing" in producer.output()  # it said the broker was away, in one line


def test_make_services_stopped_and_started_keeps_topics_messages_and_committed_offsets(manage, tmp_path, log_dir):
    ports = {"LOCAL_KAFKA_PORT": processes.free_port(), "LOCAL_MONGODB_PORT": processes.free_port()}
    env = {**manage.env, "LOCAL_BROKER": "kafka", "LOCAL_DATA_DIR": str(tmp_path / "data"),
           **{name: str(port) for name, port in ports.items()}}
    bootstrap = f"{processes.HOST}:{ports['LOCAL_KAFKA_PORT']}"
    manage.env.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                      MONGODB_URI=f"mongodb://{processes.HOST}:{ports['LOCAL_MONGODB_PORT']}/restarts")
    topic, group = manage.env["KAFKA_TOPIC"], manage.env["KAFKA_CONSUMER_GROUP"]

    def start_services():
        log = open(log_dir / f"services-{tmp_path.name}.log", "a")
        services = subprocess.Popen([sys.executable, "-m", "stack.services"], cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
        log.close()
        wait_for(lambda: services.poll() is not None or processes.kafka_answers(ports["LOCAL_KAFKA_PORT"])
                 and processes.port_open(ports["LOCAL_MONGODB_PORT"]), timeout=180, message="make services")
        assert services.poll() is None
        return services

    def stop_services(services):
        services.send_signal(signal.SIGINT)
        assert services.wait(60) == 0

    services = start_services()
    try:
        assert manage.run("produce_activity", "--rate", "1000", "--count", "300", "--seed", "92").returncode == 0
        consume(manage)
        assert manage.run("produce_activity", "--rate", "1000", "--count", "200", "--seed", "93").returncode == 0
        committed_before, end_before = committed_offsets(bootstrap, topic, group), end_offsets(bootstrap, topic)
        assert sum(committed_before.values()) == 300 and sum(end_before.values()) == 500

        stop_services(services)
        services = start_services()

        assert len(read_topic(bootstrap, topic)) == 500
        assert committed_offsets(bootstrap, topic, group) == committed_before
        consume(manage)
        assert committed_offsets(bootstrap, topic, group) == end_before  # it read only the 200 it had not committed
        with MongoClient(manage.env["MONGODB_URI"]) as client:
            stored_exactly_once(client.get_default_database()[ActivityLog._meta["collection"]], 500)
    finally:
        if services.poll() is None:
            services.kill()
            services.wait()


def test_a_record_over_the_size_limit_is_refused_at_once_and_the_events_around_it_are_delivered(
        manage, pipeline_env, pipeline_topics, activity_collection):
    """The project's producer refuses a record over 1 MB itself, as the broker would (message.max.bytes).

    Its max_request_size matches the broker's limit on purpose: raised above it, the broker refuses the
    whole batch the oversized record went into, and events sent after it to the same partition with it.
    """
    from logs.pipeline.broker import create_producer
    from logs.pipeline.generator import generate_activity

    events = [event for _, event in zip(range(20), generate_activity(users=5, seed=94))]
    producer = create_producer()
    topic = pipeline_env["KAFKA_TOPIC"]
    try:
        before = [producer.send(topic, key=event.key, value=event.to_bytes()) for event in events[:10]]
        with pytest.raises(MessageSizeTooLargeError, match="larger than the maximum request size"):
            producer.send(topic, key=b"user-1", value=b"x" * (2 * 1024 * 1024))
        after = [producer.send(topic, key=event.key, value=event.to_bytes()) for event in events[10:]]
        producer.flush(timeout=60)
    finally:
        producer.close()
    assert all(future.succeeded() for future in before + after)

    consume(manage)
    stored_exactly_once(activity_collection, 20)


def test_a_database_outage_longer_than_the_poll_interval_loses_and_duplicates_nothing(
        manage, pipeline_env, tmp_path, log_dir):
    database = processes.database(processes.free_port(), tmp_path / "db", log_dir / "poll-outage-mongodb.log").start()
    try:
        manage.env.update(MONGODB_URI=f"mongodb://{processes.HOST}:{database.port}/poll_outage",
                          KAFKA_MAX_POLL_INTERVAL_MS="8000")
        collection = MongoClient(manage.env["MONGODB_URI"])[
            "poll_outage"][ActivityLog._meta["collection"]]
        total = 2000
        producer = manage.start("produce_activity", "--rate", "200", "--count", str(total), "--seed", "95",
                                name="poll-outage-producer")
        consumer = manage.start("consume_activity", "--batch-size", "100", "--metrics-port", "0",
                                name="poll-outage-consumer")
        wait_for(lambda: collection.count_documents({}) >= 200, timeout=90, message="events stored before the outage")

        database.stop()
        # Longer than max.poll.interval.ms (8 s): the consumer, waiting on its write, stops polling and
        # leaves the group; the database stays away until it has.
        wait_for(lambda: group_members(pipeline_env["KAFKA_BOOTSTRAP_SERVERS"],
                                       pipeline_env["KAFKA_CONSUMER_GROUP"]) == 0, timeout=60, interval=0.5,
                 message="the group to drop the consumer stuck on its write")
        assert consumer.poll() is None, consumer.output()
        database.start()

        assert producer.wait(120) == 0, producer.output()
        stop_once_all_stored(consumer, collection, total)
        stored_exactly_once(collection, total)
    finally:
        database.stop()


def test_three_consumers_joining_and_leaving_a_six_partition_topic_store_each_event_once(manage, activity_collection):
    manage.env["KAFKA_TOPIC_PARTITIONS"] = "6"
    total = 4000
    command = ("consume_activity", "--batch-size", "100", "--metrics-port", "0")
    producer = manage.start("produce_activity", "--rate", "200", "--count", str(total), "--seed", "96",
                            name="six-producer")
    first = manage.start(*command, name="six-consumer-a")

    def stored_at_least(count):
        wait_for(lambda: activity_collection.count_documents({}) >= count, timeout=120,
                 message=f"{count} events stored")

    stored_at_least(500)
    second = manage.start(*command, name="six-consumer-b")
    stored_at_least(1200)
    third = manage.start(*command, name="six-consumer-c")
    stored_at_least(2000)
    first.send_signal(signal.SIGTERM)  # leaves cleanly
    assert first.wait(60) == 0, first.output()
    stored_at_least(2800)
    second.kill()  # leaves without a word: its partitions move after the session timeout
    second.wait(10)

    assert producer.wait(120) == 0, producer.output()
    stop_once_all_stored(third, activity_collection, total)
    stored_exactly_once(activity_collection, total)
