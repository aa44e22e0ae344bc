"""The consume loop: poll a batch, ingest it (the delivery guarantee, in `Ingestor.ingest`), repeat.

One batch is in flight at a time: while it is written on one worker thread, the next one is
polled and decoded, so the consumer runs at the speed of its slowest stage (the database), not
the sum of them. Measured with bench/ingest on a shared, loaded machine: one batch at a time
reached 0.48 and 0.57 of the raw insert rate, the overlap 0.65 in the same period (README,
Benchmarks). The Kafka consumer is only ever touched from the calling thread.
"""

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kafka import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError

from . import liveness, metrics
from .failures import Rejected, StopConsuming, Transient, classify, describe
from .ingestion import BatchResult, build_documents, dead_letter, decode_records, offsets_to_commit, write_documents

log = logging.getLogger(__name__)

SUMMARY_EVERY_SECONDS = 10.0


class Interrupted(Exception):
    """A stop was requested while an operation was still being retried; its batch stays uncommitted."""


def pause(seconds, should_stop):
    """Sleep `seconds`, waking early if a stop is requested."""
    deadline = time.monotonic() + seconds
    while not should_stop() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.2, left))


def retry_until_done(operation, *, what, should_stop, first_delay=0.5, max_delay=30.0, wait=None,
                     jitter=random.random):
    """Run `operation` until it succeeds, retrying `Transient` failures with capped, jittered backoff.

    The n-th wait is drawn from [d/2, d] with d = first_delay * 2^n capped at max_delay, so that
    consumers restarted together by one outage do not all hit the database at the same instant.
    `StopConsuming` and every other exception go straight through.
    """
    wait = wait or (lambda seconds: pause(seconds, should_stop))
    delay = first_delay
    while True:
        try:
            return operation()
        except Transient as exc:
            if should_stop():
                raise Interrupted(what) from exc
            seconds = delay / 2 + jitter() * delay / 2
            log.warning("%s failed (%s); retrying in %.1fs (nothing is committed until it succeeds)",
                        what, exc, seconds)
            wait(seconds)
            delay = min(delay * 2, max_delay)


def classified(operation, *, what):
    """`operation` with pymongo and kafka-python errors turned into Transient or StopConsuming."""
    def run():
        try:
            return operation()
        except Exception as exc:
            failure = classify(exc, what=what)
            if failure is None:
                raise
            raise failure from exc
    return run


@dataclass(frozen=True)
class Pipeline:
    """Where events come from and go to: the clients and names one consumer process works with."""

    consumer: object
    collection: object
    dlq_producer: object
    topic: str
    dlq_topic: str
    group: str
    dlq_max_bytes: int


class Ingestor:
    """Turns each polled batch into stored logs and dead letters, then commits it."""

    def __init__(self, pipeline, *, should_stop):
        self.pipeline = pipeline
        self.should_stop = should_stop
        self.totals = BatchResult()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")
        self._in_flight = None  # (future of steps 3-4, records)

    def ingest(self, records):
        """Store or dead-letter every record of the batch, then commit its offsets.

        1. Decode and validate each record: an ActivityEvent, or a rejection with its reason (never an exception).
        2. Build one insert per event: `_id` is the eventId, with the digest of its content.
        3. Bulk-write them, unordered, retrying transient failures. A duplicate `_id` with the same
           digest is a replay, skipped; with another digest, and any document the server will never
           accept, it becomes a rejection with that reason. The rest of the batch is stored.
        4. Dead-letter every rejection (a bounded copy with `dlq.*` headers) and wait for the
           broker's acknowledgements, retrying transient failures.
        5. Commit the batch's offsets, once 3 and 4 are done (`finish`: before the next batch is
           handed to the worker, and at stop). A crash before this replays the batch, which step 3
           makes harmless; so does a rebalance, which finishes the batch without committing it.

        Steps 3 and 4 run on the worker thread, so the next batch is polled and decoded meanwhile.
        """
        accepted, rejected = decode_records(records)
        documents = build_documents(accepted)
        self.finish()
        self._in_flight = (self._worker.submit(self._store, accepted, rejected, documents), records)

    def _store(self, accepted, rejected, documents):
        """Steps 3 and 4 of `ingest`."""
        pipeline, received = self.pipeline, len(accepted) + len(rejected)
        started = time.monotonic()
        written = retry_until_done(lambda: write_documents(pipeline.collection, documents),
                                   what="writing to MongoDB", should_stop=self.should_stop)
        write_seconds = time.monotonic() - started if documents else None
        rejected = rejected + [Rejected(accepted[index][0], reason) for index, reason in written.refused]
        if rejected:
            retry_until_done(lambda: dead_letter(pipeline.dlq_producer, pipeline.dlq_topic, rejected,
                                                 group=pipeline.group, max_bytes=pipeline.dlq_max_bytes),
                             what="publishing rejects to the dead-letter topic", should_stop=self.should_stop)
            for reject in rejected:
                log.info("dead-lettered %s[%d]@%d: %s", reject.record.topic, reject.record.partition,
                         reject.record.offset, reject.reason)
        return BatchResult(received=received, stored=written.stored,
                           duplicates=written.duplicates, dead_lettered=len(rejected)), write_seconds

    @property
    def busy(self):
        return self._in_flight is not None

    def finish(self, *, commit=True):
        """Step 5 of `ingest` for the batch in flight: wait for it, then commit (on the consumer's thread).

        `commit=False` in a rebalance: kafka-python 3 runs rebalance listeners on its IO thread,
        where a blocking commit is refused; the partitions' next owner reads the batch again and
        step 3 turns it into skipped replays.
        """
        if self._in_flight is None:
            return
        future, records = self._in_flight
        self._in_flight = None
        result, write_seconds = future.result()  # Interrupted and StopConsuming propagate: nothing is committed
        if commit:
            self.commit(records)
        self.totals.add(result)
        metrics.record_batch(received=result.received, stored=result.stored, duplicates=result.duplicates,
                             dead_lettered=result.dead_lettered, write_seconds=write_seconds)

    def commit(self, records):
        try:
            self.pipeline.consumer.commit(offsets_to_commit(records))
        except CommitFailedError:
            log.warning("partitions were reassigned before the commit; their events will be redelivered "
                        "and skipped as replays")
        except KafkaError as exc:
            if not exc.retriable:
                raise StopConsuming(f"committing offsets: Kafka refused it ({describe(exc)})") from exc
            # Commits are cumulative: the next successful one covers this batch too, and a crash
            # before then only replays events that step 3 turns into skipped replays.
            log.warning("offset commit failed (%s); the next commit covers it", describe(exc))

    def close(self):
        self._worker.shutdown(wait=True)


class GroupListener(ConsumerRebalanceListener):
    """Finishes the batch in flight before partitions move to another member (revoked, or lost when
    this member was too slow: kafka-python's default `on_partitions_lost` calls `on_partitions_revoked`);
    starts the idle clock when partitions are assigned.

    kafka-python logs and swallows what a listener raises, so a failure of the batch in flight
    (a stop requested during its retries, a configuration error) is kept in `failure` for the loop
    to raise after its poll.
    """

    def __init__(self, ingestor):
        self.ingestor = ingestor
        self.last_activity = None
        self.failure = None

    def touch(self):
        self.last_activity = time.monotonic()

    def idle_for(self):
        return None if self.last_activity is None else time.monotonic() - self.last_activity

    def on_partitions_revoked(self, revoked):
        if revoked:
            try:
                self.ingestor.finish(commit=False)
            except (Interrupted, StopConsuming) as exc:
                self.failure = exc

    def on_partitions_assigned(self, assigned):
        log.info("assigned partitions: %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "none")
        liveness.mark_ready()
        self.touch()


def consumer_lag(consumer):
    """Messages behind the end of each assigned partition, from what the last fetch reported."""
    lag = {}
    try:
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            if highwater is not None:
                lag[partition.partition] = max(highwater - consumer.position(partition, timeout_ms=1000), 0)
    except KafkaError as exc:  # the broker is away: the lag is unknown until it is back, nothing more
        log.debug("consumer lag unknown: %s", describe(exc))
    return lag


def describe_totals(totals):
    return (f"received {totals.received}, stored {totals.stored}, duplicates skipped {totals.duplicates}, "
            f"dead-lettered {totals.dead_lettered}")


def consume_activity(pipeline, *, should_stop, idle_timeout=None, batch_size=500):
    """Consume `pipeline.topic` until `should_stop()` or `idle_timeout` seconds without events; returns totals."""
    ingestor = Ingestor(pipeline, should_stop=should_stop)
    consumer = pipeline.consumer
    group = GroupListener(ingestor)
    consumer.subscribe([pipeline.topic], listener=group)
    next_summary = time.monotonic() + SUMMARY_EVERY_SECONDS
    next_lag = time.monotonic()
    summarized = BatchResult()
    try:
        while not should_stop():
            batches = consumer.poll(timeout_ms=500, max_records=batch_size)
            liveness.beat()
            if group.failure is not None:
                raise group.failure
            records = [record for partition_records in batches.values() for record in partition_records]
            if records:
                group.touch()
                ingestor.ingest(records)
            elif ingestor.busy:
                ingestor.finish()
            if (now := time.monotonic()) >= next_lag:
                metrics.record_lag(lag_by_partition=consumer_lag(consumer))
                next_lag = now + 1.0
            if now >= next_summary:
                rate = (ingestor.totals.received - summarized.received) / (now - next_summary + SUMMARY_EVERY_SECONDS)
                log.info("%s; %.1f events/s; lag %d", describe_totals(ingestor.totals), rate,
                         sum(consumer_lag(consumer).values()))
                summarized = BatchResult(**vars(ingestor.totals))
                next_summary = now + SUMMARY_EVERY_SECONDS
            if idle_timeout is not None and not ingestor.busy and (group.idle_for() or 0) >= idle_timeout:
                log.info("no events for %.0fs: stopping (--idle-timeout)", idle_timeout)
                break
        ingestor.finish()
    finally:
        ingestor.close()
    return ingestor.totals
