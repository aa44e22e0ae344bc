"""Reading a whole topic back, for the tests and the benchmarks (development only)."""

from kafka import KafkaConsumer, TopicPartition


def read_topic(bootstrap_servers, topic, **client_config):
    """Every record on `topic`, read without a consumer group from the beginning to the end.

    `client_config`: kafka-python's security arguments, for a secured broker."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, **client_config)
    try:
        partitions = [TopicPartition(topic, number) for number in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records = []
        while any(consumer.position(partition) < end[partition] for partition in partitions):
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()
