"""Where the consumer's CPU goes per event, stage by stage, in one process (no broker, no database).

    python -m bench.ingest_profile     # or: make bench-ingest (after bench.ingest)

The same EVENTS generated events (20,000 by default) as kafka-python receives them (uncompressed record
batches of 500, the consumer's batch size) go through what consume_activity does to each, timed apart:
kafka-python reading the batches into records (its CRC-32C check included: compiled with the crc32c
package, pure Python without it, measured both ways), decoding and validating them (`decode_records`),
building their documents (`build_documents`, the content digest included) and pymongo's BSON encoding of
an insert, with the cycle collector set as consume_activity sets it. Each figure is the least CPU time of
REPEAT runs, per event; then cProfile's top functions over decode and build. CPU time, not wall time: the
machine may be shared.
"""

import itertools
import os
import time

EVENTS = int(os.environ.get("EVENTS", 20_000))
BATCH = 500
REPEAT = 7


def setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "activity_service.settings")
    import django

    django.setup()


def record_batches(events):
    """The events as the bytes of uncompressed v2 record batches of BATCH records, keyed by user."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    chunks = []
    for first in range(0, len(events), BATCH):
        builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False, producer_id=-1,
                                            producer_epoch=-1, base_sequence=-1, batch_size=1 << 24)
        for delta, event in enumerate(events[first:first + BATCH]):
            builder.append(delta, timestamp=int(time.time() * 1000), key=event.key, value=event.to_bytes(),
                           headers=[])
        chunks.append(bytes(builder.build()))
    return b"".join(chunks)


def cpu_per_event(work, count):
    """The least CPU time of REPEAT runs of `work()`, in microseconds per event."""
    best = float("inf")
    for _ in range(REPEAT):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best / count * 1e6


def main():
    setup_django()
    import bson
    from kafka.consumer.fetcher import Fetcher
    from kafka.record import util
    from kafka.record._crc32c import crc as pure_python_crc32c
    from kafka.record.memory_records import MemoryRecords
    from kafka.structs import TopicPartition

    from logs.management.commands.consume_activity import settle_garbage_collector
    from logs.pipeline.generator import generate_activity
    from logs.pipeline.ingestion import build_documents, decode_records

    events = list(itertools.islice(generate_activity(users=1000, seed=2026), EVENTS))
    data = record_batches(events)
    settle_garbage_collector()  # as consume_activity does before its loop
    partition = TopicPartition("bench", 0)

    def read():
        return Fetcher.PartitionRecords(0, partition, MemoryRecords(data)).take()

    records = read()
    accepted, _ = decode_records(records, max_clock_skew_seconds=300)
    documents = build_documents(accepted)
    compiled = util.calc_crc32c.__defaults__
    figures = {"kafka-python read, CRC-32C compiled (crc32c)": cpu_per_event(read, EVENTS)}
    util.calc_crc32c.__defaults__ = (pure_python_crc32c,)
    try:
        figures["kafka-python read, CRC-32C in pure Python"] = cpu_per_event(read, EVENTS)
    finally:
        util.calc_crc32c.__defaults__ = compiled
    figures["decode and validate (decode_records)"] = cpu_per_event(
        lambda: decode_records(records, max_clock_skew_seconds=300), EVENTS)
    figures["build documents (build_documents)"] = cpu_per_event(lambda: build_documents(accepted), EVENTS)
    figures["BSON encoding of the inserts"] = cpu_per_event(lambda: [bson.encode(each) for each in documents], EVENTS)
    print(f"CPU per event, {EVENTS:,} events in batches of {BATCH} (least of {REPEAT} runs):")
    for label, micros in figures.items():
        print(f"  {label:<48} {micros:6.1f} µs")
    print("cProfile, decode and build (internal time):")
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.runcall(lambda: build_documents(decode_records(records, max_clock_skew_seconds=300)[0]))
    pstats.Stats(profile).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
