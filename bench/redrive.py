"""Re-drive benchmark: how fast `redrive_dead_letters` puts dead letters back, against copying the topic raw.

    python -m bench.redrive           # or: make bench-redrive

Once on each local broker (Tansu, then Apache Kafka; BENCH_BROKERS=kafka for one), on a fresh one each
time. The dead-letter topic (3 partitions) is filled with REDRIVE_EVENTS copies written by the consumer's
own `dead_letter_record`. The raw limit is a bare kafka-python consumer reading that topic and a bare
producer (acks=all) sending each record on, flat out, with no commits. Then the service re-drives the same
records in its own group (plan, send, wait for every acknowledgement, check and commit, per batch), once
per batch size, each in a group of its own; and the real command once, for its wall time.
"""

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVENTS = int(os.environ.get("REDRIVE_EVENTS", "50000"))
BATCH_SIZES = (100, 500, 2000)


def fill(bootstrap, dlq_topic, source):
    from kafka import KafkaProducer

    from logs.pipeline.failures import Rejected
    from logs.pipeline.generator import generate_activity
    from logs.pipeline.ingestion import dead_letter_record

    class Original:
        def __init__(self, event, offset):
            self.key, self.value, self.headers = event.key, event.to_bytes(), [("trace", b"bench")]
            self.topic, self.partition, self.offset = source, offset % 3, offset

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for offset, event in enumerate(itertools.islice(generate_activity(users=100, seed=1), EVENTS)):
        key, value, headers = dead_letter_record(Rejected(Original(event, offset), "refused by MongoDB: code 121"),
                                                 group="bench", max_bytes=900_000)
        producer.send(dlq_topic, key=key, value=value, headers=headers)
    producer.flush()
    producer.close()


def raw_copy_rate(bootstrap, dlq_topic, target):
    """Read every record of `dlq_topic` with a bare consumer and send it on with a bare producer; the clients'
    start is not timed."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from stack.topics import end_offsets

    ends = {TopicPartition(dlq_topic, number): end for number, end in end_offsets(bootstrap, dlq_topic).items()}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_bytes=16 * 1024 * 1024)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    consumer.assign(list(ends))
    consumer.seek_to_beginning(*ends)
    producer.partitions_for(target)  # its metadata, before the clock starts
    copied, started = 0, time.monotonic()
    while any(consumer.position(partition) < end for partition, end in ends.items()):
        for records in consumer.poll(timeout_ms=500, max_records=500).values():
            for record in records:
                producer.send(target, key=record.key, value=record.value, headers=record.headers)
                copied += 1
    producer.flush()
    elapsed = time.monotonic() - started
    consumer.close()
    producer.close()
    return copied / elapsed


def main():
    from bench.brokers import fresh_broker_for_django

    with fresh_broker_for_django("bench-redrive-", KAFKA_TOPIC_PARTITIONS="3") as bootstrap:
        from django.conf import settings

        from logs.pipeline.broker import ensure_topics
        from logs.pipeline.redrive import redrive_dead_letters

        dlq_topic, source = "bench-redrive.dlq", "bench-redrive"
        ensure_topics(dlq_topic, "bench-raw", source)
        fill(bootstrap, dlq_topic, source)
        print(f"{EVENTS:,} dead letters, 3 partitions", flush=True)
        raw = raw_copy_rate(bootstrap, dlq_topic, "bench-raw")
        print(f"raw limit: a bare consumer and a bare producer (acks=all) copy {raw:,.0f} records/s", flush=True)
        rates = {}
        for size in BATCH_SIZES:  # each run in a group of its own reads every record again
            settings.KAFKA_REDRIVE_GROUP = f"bench-{size}"
            started = time.monotonic()
            summary = redrive_dead_letters(source=source, dlq_topic=dlq_topic, batch_size=size)
            rates[size] = summary.redriven / (time.monotonic() - started)
            print(f"redrive_dead_letters --batch-size {size}: {summary.redriven:,} re-driven at {rates[size]:,.0f}/s",
                  flush=True)
        again = raw_copy_rate(bootstrap, dlq_topic, "bench-raw")
        raw = max(raw, again)
        print(f"raw limit again: {again:,.0f} records/s; the better of the two, {raw:,.0f}/s, is the limit")
        for size, rate in rates.items():
            print(f"  --batch-size {size}: {rate / raw:.2f} of the raw limit")
        env = {**os.environ, "KAFKA_TOPIC": source, "KAFKA_DLQ_TOPIC": dlq_topic,
               "KAFKA_REDRIVE_GROUP": "bench-command", "LOG_LEVEL": "WARNING"}
        started = time.monotonic()
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "redrive_dead_letters", "--progress-every", "600"],
                       cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        wall = time.monotonic() - started
        print(f"python manage.py redrive_dead_letters (batch 500): {wall:.2f} s wall time, {EVENTS / wall:,.0f}/s "
              "with interpreter, Django and client start-up", flush=True)


if __name__ == "__main__":
    from bench.brokers import on_each_broker

    on_each_broker(__spec__.name, main)
