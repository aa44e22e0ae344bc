"""Ingest benchmark: consume_activity against the raw limits of its two stages, in one run.

    python -m bench.ingest            # or: make bench-ingest   (EVENTS=20000 for a quick look)

Once on each local broker (Tansu, then Apache Kafka; BENCH_BROKERS=kafka for one), each run in a
process of its own. On a fresh local broker and database (the same servers `make services` runs),
with 100,000 generated events already on the topic, it measures:
  (a) a bare kafka-python consumer reading the topic (no group, no decoding): the broker limit;
  (b) pymongo insert_many of the same documents (with `_id` = eventId and the content digest) into a
      collection with the same indexes, at the batch size fastest for the database (tried in turn):
      the database limit;
  the floor of the fixed stack: the CPU per event of (a) plus that of pymongo's insert_many of the same
      documents, built beforehand, at the consumer's batch size (into only `_id`);
  (c) `manage.py consume_activity` end to end, from its first stored document to its last (read
      from its own metrics endpoint), its peak resident memory and its CPU time per event (while
      draining, and for the whole process), beside the bare consumer's CPU time per event;
  (c') the same into a collection with only the `_id` index, where the database is less of a limit
      (its secondary indexes dropped once the consumer has created them, then the events published);
then prints each CPU per event against the floor, the three rates and c / min(a, b), and what the
content digest and each secondary index cost at ingest. Last, (d) for each Kafka codec, the same events
(CODEC_EVENTS of them, 20,000 by default) in batches compressed with it: a bare kafka-python consumer's
rate (what decompressing costs) and `consume_activity`'s, into a database of its own. The machine may be shared: compare
figures from the same run only.
"""

import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVENTS = int(os.environ.get("EVENTS", 100_000))
BATCH = 500  # consume_activity's default --batch-size
RAW_BATCH_SIZES = (100, 500, 1000, 2000)
INDEX_SAMPLE = 10_000  # documents per run when measuring what each index costs
TARGET_RATIO = 0.8
TARGET_RSS_MB = 150
TARGET_CPU_US = 60  # CPU per stored event (issue #18)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CODEC_EVENTS = int(os.environ.get("CODEC_EVENTS", 20_000))


def setup_django(env):
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "activity_service.settings")
    import django

    django.setup()


def publish(topic, count, compression=None):
    from logs.pipeline.broker import create_producer
    from logs.pipeline.generator import generate_activity

    producer = create_producer(linger_ms=20, batch_size=256 * 1024, compression_type=compression)
    events = list(itertools.islice(generate_activity(users=1000, seed=2026), count))
    started = time.monotonic()
    for event in events:
        producer.send(topic, key=event.key, value=event.to_bytes())
    producer.flush()
    producer.close()
    print(f"  published {count:,} events in {time.monotonic() - started:.1f} s", flush=True)
    return events


def raw_consume_rate(bootstrap, topic, count):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, number) for number in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    received, started, cpu_started = 0, time.monotonic(), time.process_time()
    while received < count:
        received += sum(len(batch) for batch in consumer.poll(timeout_ms=1000, max_records=BATCH).values())
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_started
    consumer.close()
    return received / elapsed, cpu / received


def raw_insert(database, events, *, batch=BATCH, index_specs=None):
    """insert_many of the events' documents, built beforehand, into a scratch collection with `index_specs`
    (default: the document's); (documents/s, this process's CPU seconds per document: pymongo's own cost)."""
    from logs.storage.documents import ActivityLog

    scratch = database[f"bench_raw_{uuid.uuid4().hex[:8]}"]
    for spec in ActivityLog._meta["index_specs"] if index_specs is None else index_specs:
        scratch.create_index(spec["fields"], **{key: value for key, value in spec.items() if key != "fields"})
    documents = [ActivityLog.mongo_document(event, partition=0, offset=index) for index, event in enumerate(events)]
    started, cpu_started = time.monotonic(), time.process_time()
    for first in range(0, len(documents), batch):
        scratch.insert_many(documents[first:first + batch], ordered=False)
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_started
    scratch.drop()
    return len(documents) / elapsed, cpu / len(documents)


def raw_insert_rate(database, events, **options):
    return raw_insert(database, events, **options)[0]


def fastest_raw_insert(database, events):
    """(rate, CPU seconds per document, batch size) of the fastest batch size for the database, each tried on a
    sample, the best on all."""
    sample = events[:INDEX_SAMPLE]
    rates = {batch: raw_insert_rate(database, sample, batch=batch) for batch in RAW_BATCH_SIZES}
    for batch, rate in rates.items():
        print(f"      batch {batch:>5}: {rate:>9,.0f} documents/s ({len(sample):,} documents)", flush=True)
    best = max(rates, key=rates.get)
    return *raw_insert(database, events, batch=best), best


def index_costs(database, events):
    """Insert rate with only `_id`, with each secondary index alone, and with all of them."""
    from logs.storage.documents import ActivityLog

    sample, specs = events[:INDEX_SAMPLE], ActivityLog._meta["index_specs"]
    bare = raw_insert_rate(database, sample, index_specs=[])
    print(f"      only _id:                  {bare:>9,.0f} documents/s", flush=True)
    for spec in specs:
        rate = raw_insert_rate(database, sample, index_specs=[spec])
        print(f"      + {spec['name']:<25}{rate:>9,.0f} documents/s ({rate / bare:.0%} of only _id)", flush=True)
    every = raw_insert_rate(database, sample, index_specs=specs)
    print(f"      all {len(specs)} secondary indexes:   {every:>9,.0f} documents/s ({every / bare:.0%} of only _id)",
          flush=True)


def digest_cost_us(events):
    """CPU microseconds per event to compute the content digest (canonical bytes + SHA-256)."""
    from logs.storage.documents import content_digest

    started = time.process_time()
    for event in events:
        content_digest(event)
    return (time.process_time() - started) / len(events) * 1e6


def peak_rss_mb(pid):
    """The process's high-water resident set size so far (Linux VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return None


def process_tree(pid):
    """`pid` and every process descending from it (a server may run its work in child processes)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(children.get(current, []))
    return found


def cpu_seconds(pid):
    """User + system CPU time of `pid` and its descendants so far (threads included)."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def stored_so_far(metrics_url):
    """activity_events_stored_total from the consumer's own metrics endpoint (None until it serves).

    Asking the consumer, not the database: a count query on the database while it ingests
    would slow the very writes being measured.
    """
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    match = re.search(r"^activity_events_stored_total (\S+)$", text, re.MULTILINE)
    return int(float(match[1])) if match else None


def poll_interval(remaining, drained, seconds):
    """How long to wait before asking the consumer again: often near the first and the last event (they
    bound the timing), seldom in between. Each answer from its metrics endpoint costs the consumer CPU,
    and frequent scrapes showed up as a large share of its CPU per event (docs/benchmarks.md)."""
    if drained <= 0 or seconds <= 0:
        return 0.1
    return min(max(remaining / (drained / seconds) / 4, 0.1), 2.0)


def wait_ready(port, child, log_path):
    """Until the consumer's /readyz answers 200: it has prepared the collection and holds its partitions."""
    from stack import processes

    while True:
        try:
            with urllib.request.urlopen(f"http://{processes.HOST}:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if child.poll() is not None:
            raise SystemExit(f"consume_activity exited early with {child.returncode}; see {log_path}")
        time.sleep(0.2)


def consume_activity_rate(env, count, log_path, *, once_ready=None):
    """(events/s, peak RSS MB, CPU seconds per event while draining, for the whole process) of consume_activity
    storing `count` events; `once_ready()`, when given, runs once it is ready (and may publish the events)."""
    from stack import processes

    port = processes.free_port()
    with open(log_path, "w") as log:
        child = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "consume_activity", "--idle-timeout", "3",
                                  "--metrics-port", str(port)], cwd=ROOT, env={**os.environ, **env}, stdout=log,
                                 stderr=subprocess.STDOUT)
    if once_ready is not None:
        wait_ready(port, child, log_path)
        once_ready()
    peak, first_seen, stored_at_first, cpu_at_first = 0.0, None, 0, 0.0
    while True:
        stored = stored_so_far(f"http://{processes.HOST}:{port}/metrics") or 0
        now = time.monotonic()
        if first_seen is None and stored > 0:
            first_seen, stored_at_first, cpu_at_first = now, stored, cpu_seconds(child.pid)
        if stored >= count:
            finished, cpu_at_last = now, cpu_seconds(child.pid)
            break
        if child.poll() is not None:
            raise SystemExit(f"consume_activity exited early with {child.returncode}; see {log_path}")
        peak = max(peak, peak_rss_mb(child.pid) or 0)
        time.sleep(poll_interval(count - stored, stored - stored_at_first, now - first_seen if first_seen else 0))
    peak = max(peak, peak_rss_mb(child.pid) or 0)
    _, status, usage = os.wait4(child.pid, 0)  # the child's own CPU time, whatever else the machine runs
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"consume_activity failed with {child.returncode}; see {log_path}")
    elapsed = finished - first_seen  # zero when the first look already saw every event: too few to time
    drained = count - stored_at_first
    rate = drained / elapsed if elapsed > 0 else float("nan")
    # Two CPU figures per event: while draining (from the first stored event to the last, measured as
    # the bare consumer's is, without its start), and the whole process's (Django's start-up, the group
    # join and the idle timeout at the end included), which a short run inflates.
    draining = (cpu_at_last - cpu_at_first) / drained if drained > 0 else float("nan")
    return rate, peak, draining, (usage.ru_utime + usage.ru_stime) / count


def only_id_index_rate(env, count, scratch):
    """(c'): consume_activity into a collection with only the `_id` index, where the database is less of a
    limit: the consumer creates the four indexes at start, as it must; once it is ready the benchmark drops
    the three secondary ones, then publishes the same events to a topic of this run's own."""
    import pymongo

    from logs.pipeline.broker import ensure_topics
    from logs.storage.documents import COLLECTION

    topic = "bench-activity-only-id"
    only_id = {**env, "KAFKA_TOPIC": topic, "KAFKA_CONSUMER_GROUP": "bench-ingest-only-id",
               "MONGODB_URI": f"{env['MONGODB_URI']}_only_id"}
    ensure_topics(topic)

    def drop_secondary_indexes_and_publish():
        with pymongo.MongoClient(only_id["MONGODB_URI"]) as client:
            collection = client.get_default_database()[COLLECTION]
            for name in collection.index_information():
                if name != "_id_":
                    collection.drop_index(name)
        publish(topic, count)

    return consume_activity_rate(only_id, count, Path(scratch) / "consumer-only-id.log",
                                 once_ready=drop_secondary_indexes_and_publish)


def codec_rates(env, count, scratch):
    """(d): consume_activity's rate on batches in each compression codec, each into a database of its own."""
    from logs.pipeline.broker import COMPRESSION_CODECS, ensure_topics

    for codec in COMPRESSION_CODECS:
        topic = f"bench-activity-{codec}"
        ensure_topics(topic)
        publish(topic, count, compression=None if codec == "none" else codec)
        codec_env = {**env, "KAFKA_TOPIC": topic, "KAFKA_CONSUMER_GROUP": f"bench-ingest-{codec}",
                     "MONGODB_URI": f"{env['MONGODB_URI']}_{codec}"}
        raw, _ = raw_consume_rate(env["KAFKA_BOOTSTRAP_SERVERS"], topic, count)
        rate, *_ = consume_activity_rate(codec_env, count, Path(scratch) / f"consumer-{codec}.log")
        print(f"  (d) {codec:<6}: bare kafka-python consume {raw:>9,.0f} events/s; "
              f"consume_activity {rate:>9,.0f} events/s", flush=True)


def main():
    from stack import processes

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
        broker = processes.broker(processes.free_port(), Path(scratch) / "broker.log",
                                  data_dir=Path(scratch) / "broker").start()
        database = processes.database(processes.free_port(), Path(scratch) / "db", Path(scratch) / "db.log").start()
        try:
            bootstrap = f"{processes.HOST}:{broker.port}"
            env = {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "KAFKA_TOPIC": "bench-activity",
                "KAFKA_DLQ_TOPIC": "bench-activity.dlq",
                "KAFKA_CONSUMER_GROUP": "bench-ingest",
                "KAFKA_SESSION_TIMEOUT_MS": "6000",
                "MONGODB_URI": f"mongodb://{processes.HOST}:{database.port}/bench_ingest",
                "LOG_LEVEL": "WARNING",
            }
            setup_django(env)
            from logs.pipeline.broker import ensure_topics
            from logs.storage.documents import ActivityLog

            print(f"ingest benchmark: {EVENTS:,} events, 3 partitions, batches of {BATCH}", flush=True)
            ensure_topics(env["KAFKA_TOPIC"], env["KAFKA_DLQ_TOPIC"])
            events = publish(env["KAFKA_TOPIC"], EVENTS)

            raw_kafka, raw_cpu = raw_consume_rate(bootstrap, env["KAFKA_TOPIC"], EVENTS)
            print(f"  (a) raw kafka-python consume:   {raw_kafka:>9,.0f} events/s, CPU {raw_cpu * 1e6:.0f} µs/event",
                  flush=True)
            database_handle = ActivityLog._get_db()
            raw_mongo, raw_mongo_cpu, best_batch = fastest_raw_insert(database_handle, events)
            print(f"  (b) raw pymongo insert_many:    {raw_mongo:>9,.0f} documents/s (batches of {best_batch}), "
                  f"CPU {raw_mongo_cpu * 1e6:.0f} µs/document", flush=True)
            # The floor of the fixed stack: what kafka-python's read and pymongo's write of the same documents cost
            # with nothing in between, the write at the consumer's batch size into only `_id` (the client's CPU
            # barely depends on the server's indexes; this way the database holds it up least).
            _, floor_insert_cpu = raw_insert(database_handle, events, batch=BATCH, index_specs=[])
            floor = raw_cpu + floor_insert_cpu
            print(f"  floor of the fixed stack: read (a) {raw_cpu * 1e6:.1f} + insert_many of prepared documents "
                  f"(batches of {BATCH}, only _id) {floor_insert_cpu * 1e6:.1f} = {floor * 1e6:.1f} µs CPU/event",
                  flush=True)
            ActivityLog.ensure_indexes()
            rate, rss, cpu, whole_cpu = consume_activity_rate(env, EVENTS, Path(scratch) / "consumer.log")
            print(f"  (c) consume_activity end to end:{rate:>9,.0f} events/s, peak RSS {rss:.0f} MB, "
                  f"CPU {cpu * 1e6:.0f} µs/event while draining, {whole_cpu * 1e6:.0f} for the whole process "
                  f"(bare read: {raw_cpu * 1e6:.0f})", flush=True)
            fast_rate, _, fast_cpu, fast_whole_cpu = only_id_index_rate(env, EVENTS, scratch)
            print(f"  (c') the same, only the _id index:{fast_rate:>7,.0f} events/s, CPU {fast_cpu * 1e6:.0f} µs/event "
                  f"while draining, {fast_whole_cpu * 1e6:.0f} for the whole process", flush=True)
            for label, micros in (("c", cpu * 1e6), ("c'", fast_cpu * 1e6)):
                print(f"  CPU per event while draining ({label}) / floor = {micros:.0f} / {floor * 1e6:.0f} = "
                      f"{micros / (floor * 1e6):.2f}; target <= {TARGET_CPU_US} µs: "
                      f"{'met' if micros <= TARGET_CPU_US else 'MISSED'}", flush=True)
            print(f"  content digest: {digest_cost_us(events):.1f} µs CPU per event")
            print("  what each secondary index costs at ingest:")
            index_costs(database_handle, events)
            stored = ActivityLog._get_collection().count_documents({})
            ratio = rate / min(raw_kafka, raw_mongo)
            print(f"  stored {stored:,} of {EVENTS:,} events")
            print(f"  ratio c / min(a, b) = {ratio:.2f} (target >= {TARGET_RATIO}): "
                  f"{'met' if ratio >= TARGET_RATIO else 'MISSED'}")
            print(f"  peak RSS {rss:.0f} MB (target <= {TARGET_RSS_MB} MB): "
                  f"{'met' if rss <= TARGET_RSS_MB else 'MISSED'}")
            codec_rates(env, CODEC_EVENTS, scratch)
        finally:
            database.stop()
            broker.stop()


if __name__ == "__main__":
    from bench.brokers import on_each_broker

    on_each_broker(__spec__.name, main)
