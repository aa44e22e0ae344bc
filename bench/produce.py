"""Producer benchmark: does `produce_activity` keep its rate?

    python -m bench.produce           # or: make bench-produce

Once on each local broker (Tansu, then Apache Kafka; BENCH_BROKERS=kafka for one), on a fresh one
each time, it runs the two cases of the targets as real commands:
  --rate 5 --count 50        should take 10 s ± 0.3 s;
  --rate 2000 --count 20000  should achieve 2000/s within 3 %.
For each it prints the publishing time the command reports, the whole process's wall time
(interpreter and Django start-up included), and the rate seen independently in the Kafka
record timestamps. The raw limit beside them is a bare KafkaProducer sending as fast as it can.
"""

import itertools
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ((5, 50, "duration", 10.0, 0.3), (2000, 20000, "rate", 2000.0, 0.03))


def raw_producer_rate(bootstrap, topic, count=50_000):
    from kafka import KafkaProducer

    from logs.pipeline.generator import generate_activity

    payloads = [(event.key, event.to_bytes()) for event in itertools.islice(generate_activity(users=100, seed=1), count)]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    started = time.monotonic()
    for key, value in payloads:
        producer.send(topic, key=key, value=value)
    producer.flush()
    elapsed = time.monotonic() - started
    producer.close()
    return count / elapsed


def main():
    from bench.brokers import fresh_broker_for_django
    from stack.topics import read_topic

    with fresh_broker_for_django("bench-produce-") as bootstrap:
        from logs.pipeline.broker import ensure_topics

        ensure_topics("bench-raw")
        raw = raw_producer_rate(bootstrap, "bench-raw")
        print(f"raw limit: a bare KafkaProducer sends {raw:,.0f} events/s", flush=True)
        for rate, count, judged, target, tolerance in CASES:
            topic = f"bench-produce-{rate}"
            env = {**os.environ, "KAFKA_TOPIC": topic, "KAFKA_DLQ_TOPIC": f"{topic}.dlq", "LOG_LEVEL": "WARNING"}
            started = time.monotonic()
            result = subprocess.run([sys.executable, str(ROOT / "manage.py"), "produce_activity", "--rate", str(rate),
                                     "--count", str(count), "--seed", "1"], cwd=ROOT, env=env, capture_output=True,
                                    text=True, check=True)
            wall = time.monotonic() - started
            reported = re.search(r"acknowledged in ([\d.]+) s \(([\d.]+)/s\)", result.stdout)
            seconds, achieved = float(reported[1]), float(reported[2])
            stamps = sorted(record.timestamp for record in read_topic(bootstrap, topic))
            seen = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000)
            print(f"--rate {rate} --count {count}: published in {seconds:.2f} s at {achieved:,.1f}/s "
                  f"(process wall time {wall:.2f} s); {len(stamps):,} records on the topic, "
                  f"{seen:,.1f}/s between the first and last record timestamps; {rate / raw:.3f} of the raw limit")
            if judged == "duration":
                verdict = abs(seconds - target) <= tolerance
                print(f"  target {target:g} s ± {tolerance:g} s: {'met' if verdict else 'MISSED'} "
                      f"(publishing time; the process adds {wall - seconds:.2f} s of start-up and shut-down)")
            else:
                error = abs(achieved - target) / target
                print(f"  target {target:,.0f}/s within {tolerance:.0%}: {'met' if error <= tolerance else 'MISSED'} "
                      f"(off by {error:.2%})")


if __name__ == "__main__":
    from bench.brokers import on_each_broker

    on_each_broker(__spec__.name, main)
