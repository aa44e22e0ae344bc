"""Transactions (docs/contract.md "Delivery and storage guarantees"): the consumer reads committed data only.

Events a producer wrote in a transaction it aborted are never stored; a committed transaction's events are
stored exactly once; the markers that end transactions are never events. Written with kafka-python's
transactional producer and with Apache Kafka's own Java client (stack/java_producer.py), uncompressed and
in lz4 batches, on Apache Kafka. Not on Tansu: it runs transactions and writes their markers, but its
read_committed fetch answers with the aborted records and no list of aborted transactions, so no client
can leave them out (docs/operations.md "Transactions").
"""

import os
import signal
import urllib.request
import uuid
from datetime import datetime, timezone

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pymongo import MongoClient

from logs.events import ActivityEvent
from logs.storage.documents import ActivityLog
from stack import java_producer, processes
from stack.topics import read_topic
from tests.support.broker import committed_offsets, ends_of_records
from tests.support.commands import consume
from tests.support.hostile import UndecodableHeaderName
from tests.support.waiting import wait_for

# Apache Kafka only, but for the test that pins why: transactions are the broker's own behaviour.
pytestmark = [pytest.mark.integration, pytest.mark.brokers("kafka")]


def events(count):
    moment = datetime.now(timezone.utc).replace(microsecond=0)
    return [ActivityEvent(event_id=str(uuid.uuid4()), user_id=f"user-{number % 7}", action="balance_inquiry",
                          timestamp=moment, balance_cents=number) for number in range(count)]


def write_with_kafka_python(bootstrap_servers, topic, transactions, *, compression=None):
    """Each (events, "commit" or "abort") as one transaction of kafka-python's transactional producer."""
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, transactional_id=f"tx-{uuid.uuid4().hex[:8]}",
                             compression_type=compression, linger_ms=20)
    try:
        producer.init_transactions()
        for batch, outcome in transactions:
            producer.begin_transaction()
            for event in batch:
                producer.send(topic, key=event.key, value=event.to_bytes())
            producer.flush()
            producer.commit_transaction() if outcome == "commit" else producer.abort_transaction()
    finally:
        producer.close()


def write_with_java(bootstrap_servers, topic, transactions, *, compression=None):
    """The same with Apache Kafka's own producer (kafka-clients, the broker's version)."""
    commands = []
    for batch, outcome in transactions:
        commands += ["begin", *(java_producer.send(topic, event.key, event.to_bytes()) for event in batch), "flush",
                     outcome]
    java_producer.write(bootstrap_servers, commands, transactional_id=f"tx-{uuid.uuid4().hex[:8]}",
                        compression=compression, linger_ms=20)


WRITERS = {"kafka-python": write_with_kafka_python, "java": write_with_java}


@pytest.mark.parametrize("compression", [None, "lz4"], ids=["uncompressed", "lz4"])
@pytest.mark.parametrize("writer", WRITERS, ids=WRITERS)
def test_an_aborted_transaction_is_never_stored_and_committed_ones_are_stored_once(
        writer, compression, manage, pipeline_env, bootstrap_servers, pipeline_topics,
        activity_collection):
    topic, dlq_topic = pipeline_topics
    first, aborted, last = events(40), events(40), events(40)
    WRITERS[writer](bootstrap_servers, topic, [(first, "commit"), (aborted, "abort"), (last, "commit")],
                    compression=compression)
    on_topic = {record.value for record in read_topic(bootstrap_servers, topic)}  # read_uncommitted: all of them
    assert {event.to_bytes() for event in aborted} <= on_topic

    consume(manage)
    consume(manage)  # a second run, from the committed offsets, changes nothing

    assert sorted(activity_collection.distinct("_id")) == sorted(event.event_id for event in first + last)
    assert activity_collection.count_documents({}) == 80
    assert read_topic(bootstrap_servers, dlq_topic) == []  # no marker was taken for an event and refused
    # The group's commit reaches past the last marker: Kafka's own lag tools see nothing left to read.
    assert committed_offsets(bootstrap_servers, topic, pipeline_env["KAFKA_CONSUMER_GROUP"]) == \
        ends_of_records(bootstrap_servers, topic)


@pytest.mark.parametrize("writer", WRITERS, ids=WRITERS)
def test_a_topic_of_only_aborted_transactions_stores_and_dead_letters_nothing(
        writer, manage, pipeline_env, bootstrap_servers, pipeline_topics, activity_collection):
    topic, dlq_topic = pipeline_topics
    WRITERS[writer](bootstrap_servers, topic, [(events(30), "abort"), (events(30), "abort")])
    output = consume(manage)
    assert activity_collection.count_documents({}) == 0
    assert read_topic(bootstrap_servers, dlq_topic) == []
    assert "received 0" in output.splitlines()[-1] or "received" not in output
    ends = ends_of_records(bootstrap_servers, topic)
    assert committed_offsets(bootstrap_servers, topic, pipeline_env["KAFKA_CONSUMER_GROUP"]) == ends and ends


def test_a_consumer_killed_after_reading_past_an_abort_marker_and_before_committing_stores_only_committed_events(
        manage, pipeline_env, bootstrap_servers, pipeline_topics, tmp_path, log_dir):
    topic, dlq_topic = pipeline_topics
    database = processes.database(processes.free_port(), tmp_path / "db", log_dir / "tx-crash-mongodb.log").start()
    try:
        manage.env["MONGODB_URI"] = f"mongodb://{processes.HOST}:{database.port}/tx_crash"
        collection = MongoClient(manage.env["MONGODB_URI"])["tx_crash"][ActivityLog._meta["collection"]]
        metrics_port = processes.free_port()
        consumer = manage.start("consume_activity", "--metrics-port", str(metrics_port), name="tx-crash-consumer")
        wait_for(lambda: "assigned partitions" in consumer.output(), timeout=60, message="the consumer's assignment")
        first, aborted, last = events(30), events(30), events(30)
        group = os.getpgid(database.process.pid)
        try:
            os.killpg(group, signal.SIGSTOP)  # the consumer reads on, and can neither store nor commit
            write_with_java(bootstrap_servers, topic, [(first, "commit"), (aborted, "abort"), (last, "commit")])
            wait_for(lambda: lag_is_zero(metrics_port), timeout=60, message="the consumer to read past every marker")
            consumer.send_signal(signal.SIGKILL)
            consumer.wait(10)
        finally:
            os.killpg(group, signal.SIGCONT)
        assert committed_offsets(bootstrap_servers, topic, pipeline_env["KAFKA_CONSUMER_GROUP"]) == {}

        consume(manage)
        assert sorted(collection.distinct("_id")) == sorted(event.event_id for event in first + last)
        assert collection.count_documents({}) == 60
        assert read_topic(bootstrap_servers, dlq_topic) == []
    finally:
        database.stop()


def lag_is_zero(port):
    """True once the consumer reports every partition read to its end (its position past the last marker)."""
    try:
        with urllib.request.urlopen(f"http://{processes.HOST}:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return False
    lags = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("activity_consumer_lag{")]
    return len(lags) == 3 and not any(lags)


def test_an_undecodable_batch_after_an_aborted_transaction_is_read_again_without_the_aborted_events(
        manage, bootstrap_servers, pipeline_topics, activity_collection):
    """The raw fetch of logs/pipeline/record_batches.py reads committed too: kafka-python fails the batch after
    an aborted transaction, and the batch is read again as bytes from the consumer's position, which is still
    before the aborted transaction."""
    topic, dlq_topic = pipeline_topics
    aborted, around = events(20), events(3)
    java_producer.write(bootstrap_servers, ["begin", *(java_producer.send(topic, event.key, event.to_bytes(),
                                                                          partition=0) for event in aborted),
                                            "flush", "abort"], transactional_id=f"tx-{uuid.uuid4().hex[:8]}")
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=500)
    producer.send(topic, partition=0, key=around[0].key, value=around[0].to_bytes())
    producer.send(topic, partition=0, key=b"user-1", value=b"{}", headers=[(UndecodableHeaderName("x"), b"v")])
    producer.send(topic, partition=0, key=around[1].key, value=around[1].to_bytes())
    producer.flush()
    producer.send(topic, partition=0, key=around[2].key, value=around[2].to_bytes())
    producer.flush()
    producer.close()

    output = consume(manage)

    assert "read it as bytes" in output  # the batch did go through record_batches
    assert sorted(activity_collection.distinct("_id")) == sorted(event.event_id for event in around)
    [dead] = read_topic(bootstrap_servers, dlq_topic)
    assert dict(dead.headers)["dlq.reason"].startswith(b"header name not UTF-8")


def test_a_raw_fetch_from_before_an_aborted_transaction_reads_only_the_committed_batch_after_it(
        pipeline_settings, bootstrap_servers, pipeline_topics):
    """The consumer's raw read (`fetch_batch`: kafka_internals.fetch_records and record_batches.read_batch) from
    an offset before an aborted transaction: the broker's list of aborted transactions, read from its answer,
    leaves them out."""
    from logs.pipeline.broker import create_consumer
    from logs.pipeline.consuming import fetch_batch

    topic, _ = pipeline_topics
    aborted, committed_events = events(20), events(5)
    commands = []
    for batch, outcome in ((aborted, "abort"), (committed_events, "commit")):
        commands += ["begin", *(java_producer.send(topic, event.key, event.to_bytes(), partition=0) for event in batch),
                     "flush", outcome]
    java_producer.write(bootstrap_servers, commands, transactional_id=f"tx-{uuid.uuid4().hex[:8]}", linger_ms=20)
    reader = create_consumer(group_id=None, client_id="raw-reader")
    try:
        partition = TopicPartition(topic, 0)
        reader.assign([partition])
        reader.seek(partition, 0)
        wait_for(lambda: reader.poll(timeout_ms=500), timeout=30, message="the reader's first records")
        batch = fetch_batch(reader, partition, 0, max_record_bytes=1024 * 1024)
    finally:
        reader.close()
    assert [raw.record.value for raw in batch.records] == [event.to_bytes() for event in committed_events]
    assert batch.base_offset == 21  # past the 20 aborted records and their marker


@pytest.mark.brokers("tansu")
def test_tansu_still_returns_an_aborted_transactions_records_to_a_read_committed_fetch(
        bootstrap_servers, pipeline_topics):
    """Why the tests above run on Apache Kafka only. When this fails, Tansu leaves aborted records out (or no
    longer runs transactions) and those tests can run on it too."""
    topic, _ = pipeline_topics
    aborted = events(3)
    write_with_kafka_python(bootstrap_servers, topic, [(aborted, "abort")])
    reader = KafkaConsumer(bootstrap_servers=bootstrap_servers, isolation_level="read_committed",
                           enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, number) for number in range(3)]
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        seen = []
        wait_for(lambda: seen.extend(record.value for batch in reader.poll(timeout_ms=500).values()
                                     for record in batch) or len(seen) >= 3, timeout=30,
                 message="the aborted records, read committed")
    finally:
        reader.close()
    assert sorted(seen) == sorted(event.to_bytes() for event in aborted)
