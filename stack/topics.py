"""Reading a whole topic back, for the tests and the benchmarks (development only)."""

import time

from kafka import KafkaConsumer, TopicPartition

# How long a partition may go without answering a fetch before reading it counts as failed.
FETCH_DEADLINE_SECONDS = 30


def read_topic(bootstrap_servers, topic, **client_config):
    """Every record on `topic`, read without a consumer group from the beginning to the end.

    `client_config`: kafka-python's security arguments, for a secured broker."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, **client_config)
    try:
        records, _ = _read(consumer, topic)
        return records
    finally:
        consumer.close()


def end_offsets(bootstrap_servers, topic, **client_config):
    """{partition number: the offset after its last record}, from a fetch's high watermark.

    Not ListOffsets: Tansu answers it with the base offset of the last record batch plus one, short of the
    end when that batch holds several records."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, **client_config)
    try:
        _, ends = _read(consumer, topic, keep=False)
        return {partition.partition: end for partition, end in ends.items()}
    finally:
        consumer.close()


def _read(consumer, topic, *, keep=True):
    """(records, {partition: end}), reading each partition from its beginning to the high watermark of its
    first fetch; with keep=False each partition is fetched from its end, only to learn the end."""
    partitions = [TopicPartition(topic, number) for number in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(partitions)
    if keep:
        consumer.seek_to_beginning(*partitions)
    else:
        consumer.seek_to_end(*partitions)
    ends, records = {}, []
    deadline = time.monotonic() + FETCH_DEADLINE_SECONDS
    while len(ends) < len(partitions) or any(consumer.position(partition) < ends[partition] for partition in ends):
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading {topic}: no fetch answer for {sorted(set(partitions) - set(ends))} "
                               f"within {FETCH_DEADLINE_SECONDS} s")
        for partition, batch in consumer.poll(timeout_ms=1000).items():
            if keep:
                records.extend(batch)
            deadline = time.monotonic() + FETCH_DEADLINE_SECONDS
        for partition in partitions:
            if partition not in ends and (highwater := consumer.highwater(partition)) is not None:
                ends[partition] = highwater
    return [record for record in records if record.offset < ends[TopicPartition(topic, record.partition)]], ends
