"""Kafka as a test client sees it: records published, offsets committed and written.

Reading a whole topic back is `stack.topics.read_topic` (the benchmarks use it too). Every helper takes
kafka-python's security arguments (`client_config`) for a secured broker.
"""

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stack.topics import end_offsets

# Above the broker's own limit (message.max.bytes, 1 MB), so that the broker, not this client, judges a record.
MAX_REQUEST_BYTES = 4 * 1024 * 1024


def publish(bootstrap_servers, topic, records, **client_config):
    """Send each (key, value) or (key, value, headers) of `records` to `topic`, as another client would,
    and wait until every one is acknowledged by all in-sync replicas."""
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", max_request_size=MAX_REQUEST_BYTES,
                             max_block_ms=30000, **client_config)
    try:
        futures = [producer.send(topic, key=key, value=value, headers=headers[0] if headers else None)
                   for key, value, *headers in records]
        producer.flush(timeout=30)
        assert all(future.succeeded() for future in futures), [future.exception for future in futures]
    finally:
        producer.close()


def committed_offsets(bootstrap_servers, topic, group, **client_config):
    """{partition number: offset} the group committed on `topic` (partitions without a commit left out),
    read without joining the group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False,
                             **client_config)
    try:
        committed = {number: consumer.committed(TopicPartition(topic, number))
                     for number in sorted(consumer.partitions_for_topic(topic) or [])}
        return {number: offset for number, offset in committed.items() if offset is not None}
    finally:
        consumer.close(autocommit=False)


class GroupProgress:
    """Whether a consumer group has committed every record of a topic, asked again and again through one
    client (without joining the group) while a consumer runs: what `consume` waits on."""

    def __init__(self, bootstrap_servers, topic, group, **client_config):
        self.bootstrap_servers, self.topic, self.client_config = bootstrap_servers, topic, client_config
        self.client = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False,
                                    **client_config)

    def caught_up(self):
        """True once, on every partition, the group's commit has reached the end (a partition never written
        needs none); False while the topic does not exist yet.

        The ends asked first (ListOffsets, through the one client) fall short on Tansu when the last batch
        holds several records, so a commit that reaches them is confirmed against the high watermarks."""
        numbers = self.client.partitions_for_topic(self.topic)
        if not numbers:
            self.client.topics()  # a topic the consumer has just created: fresh metadata for the next call
            return False
        partitions = [TopicPartition(self.topic, number) for number in numbers]
        committed = {partition.partition: self.client.committed(partition) or 0 for partition in partitions}
        if any(committed[partition.partition] < end for partition, end in self.client.end_offsets(partitions).items()):
            return False
        ends = end_offsets(self.bootstrap_servers, self.topic, **self.client_config)
        return all(committed.get(partition, 0) >= end for partition, end in ends.items())

    def close(self):
        self.client.close(autocommit=False)


def ends_of_records(bootstrap_servers, topic, **client_config):
    """The end offsets of the partitions of `topic` that hold records: where a group that read it all commits."""
    return {partition: end for partition, end in end_offsets(bootstrap_servers, topic, **client_config).items()
            if end}
