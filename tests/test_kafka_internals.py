"""logs/pipeline/kafka_internals.py: what it does to kafka-python, on real sockets."""

import socket
import types
import uuid

import pytest
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import KafkaConnectionError, RebalanceInProgressError
from kafka.net.transport import KafkaSSLTransport, KafkaTCPTransport
from kafka.structs import OffsetAndMetadata, TopicPartition

from logs.pipeline import kafka_internals
from logs.pipeline.consuming import Ingestor
from tests.support.broker import committed_offsets, publish
from tests.support.builders import pipeline, valid_event
from tests.support.waiting import wait_for


@pytest.fixture
def ended_stream():
    """A socket whose peer sent an answer and closed: both wait to be read, as after a refused login."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.sendall(b"the broker's answer")
    peer.close()
    yield types.SimpleNamespace(_sock=ours)
    ours.close()


def test_kafka_python_alone_drops_bytes_read_together_with_the_end_of_the_stream(ended_stream):
    """Why the adapter patches the transports: when this fails, kafka-python no longer reports an error with
    the bytes it read (or no longer has `_sock_recv`), and the patch can go."""
    original = KafkaTCPTransport._sock_recv.__wrapped__
    data, error = original(ended_stream)
    assert data == b"the broker's answer" and isinstance(error, KafkaConnectionError)


@pytest.mark.parametrize("transport", [KafkaTCPTransport, KafkaSSLTransport])
def test_bytes_read_before_the_end_are_delivered_and_the_end_is_reported_at_the_next_read(ended_stream, transport):
    assert transport._sock_recv.keeps_data_read_before_the_end
    assert transport._sock_recv(ended_stream) == (b"the broker's answer", None)
    data, error = transport._sock_recv(ended_stream)
    assert data == b"" and isinstance(error, KafkaConnectionError)


def test_the_patch_is_applied_once_however_often_it_is_asked_for():
    before = KafkaTCPTransport._sock_recv
    kafka_internals.deliver_data_read_before_the_end_of_stream()
    assert KafkaTCPTransport._sock_recv is before


@pytest.fixture
def growing_topic(bootstrap_servers):
    """(admin, consumer, topic): a one-partition topic that `consumer`, a member of its own group, holds. It
    reads from the start, so that records published once it holds the partition are read whenever its
    position is first looked up."""
    topic = f"rejoin-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=f"group-{topic}",
                             enable_auto_commit=False, metadata_max_age_ms=300, auto_offset_reset="earliest")
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
        consumer.subscribe([topic])
        wait_for(lambda: consumer.poll(timeout_ms=200) is not None and len(consumer.assignment()) == 1,
                 timeout=60, message="the first partition assigned")
        yield admin, consumer, topic
    finally:
        consumer.close(autocommit=False)
        admin.close()


def drop_a_rebalance(admin, consumer, topic):
    """Partitions added to the subscribed topic start a rebalance; polls too short for its round trip leave
    its assignment unapplied in kafka-python alone. When the wait times out, kafka-python applies such an
    assignment itself, and the adapter's function can go."""
    admin.create_partitions({topic: NewPartitions(3)})

    def left_unapplied():
        consumer.poll(timeout_ms=0)
        return kafka_internals.rebalance_left_unapplied(consumer)

    wait_for(left_unapplied, timeout=60, interval=0.05, message="kafka-python's rebalance left unapplied")
    assert len(consumer.assignment()) < 3


def all_three_assigned(consumer):
    wait_for(lambda: consumer.poll(timeout_ms=200) is not None and len(consumer.assignment()) == 3,
             timeout=60, message="the three partitions assigned")


@pytest.mark.integration
def test_a_rebalance_that_outlasts_its_poll_still_assigns_the_partitions(growing_topic):
    """Kafka-python alone leaves a rebalance's assignment unapplied; the adapter's rejoin applies one."""
    admin, consumer, topic = growing_topic
    assert not kafka_internals.rejoin_after_a_dropped_rebalance(consumer)
    drop_a_rebalance(admin, consumer, topic)
    assert kafka_internals.rejoin_after_a_dropped_rebalance(consumer)
    all_three_assigned(consumer)


@pytest.mark.integration
def test_offsets_whose_commit_a_rebalance_refuses_are_committed_once_it_is_done(growing_topic, bootstrap_servers,
                                                                                activity_collection):
    """kafka-python refuses a commit while its member is between generations, as in a dropped rebalance until
    the adapter's rejoin is done: the consumer goes on, and commits those offsets after the rebalance."""
    admin, consumer, topic = growing_topic
    publish(bootstrap_servers, topic, [(None, valid_event(f"user-{n}").to_bytes()) for n in range(3)])
    records = []

    def all_read():
        for partition_records in consumer.poll(timeout_ms=200).values():
            records.extend(partition_records)
        return len(records) == 3

    wait_for(all_read, timeout=60, message="the three events read")
    drop_a_rebalance(admin, consumer, topic)
    with pytest.raises(RebalanceInProgressError):  # what the consumer is given, without the ingestor
        consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "", -1)})
    ingestor = Ingestor(pipeline(consumer, topic=topic, collection=activity_collection, group=f"group-{topic}"),
                        should_stop=lambda: False)
    try:
        ingestor.ingest(records)
        ingestor.finish(now=True)
        assert activity_collection.count_documents({}) == 3
        assert committed_offsets(bootstrap_servers, topic, f"group-{topic}") == {}
        kafka_internals.rejoin_after_a_dropped_rebalance(consumer)
        all_three_assigned(consumer)
        ingestor.finish(now=True)
        assert committed_offsets(bootstrap_servers, topic, f"group-{topic}") == {0: 3}
    finally:
        ingestor.close()
