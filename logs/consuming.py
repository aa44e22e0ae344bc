"""The consume loop: poll batches, ingest them, commit, retry outages, stop cleanly.

Polling and decoding the next batch overlaps with writing the previous one (one batch in flight,
on one worker thread), so the consumer runs at the speed of its slowest stage, not their sum.
The Kafka consumer itself is only ever touched from the calling thread.
"""

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from kafka import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from pymongo.errors import PyMongoError

from . import liveness
from .ingestion import BatchResult, WriteFailed, build_documents, dead_letter, decode_records, offsets_to_commit, write_documents

log = logging.getLogger(__name__)

TRANSIENT_ERRORS = (PyMongoError, KafkaError, WriteFailed)


class Interrupted(Exception):
    """A stop was requested while an operation was still being retried; its batch stays uncommitted."""


def describe(exc):
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first_line[:400]}"


def pause(seconds, should_stop):
    """Sleep `seconds`, waking early if a stop is requested."""
    deadline = time.monotonic() + seconds
    while not should_stop() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.2, left))


def retry_until_done(operation, *, what, should_stop, transient=TRANSIENT_ERRORS, first_delay=0.5,
                     max_delay=30.0, wait=None):
    """Run `operation` until it succeeds, backing off exponentially (capped) on transient errors."""
    wait = wait or (lambda seconds: pause(seconds, should_stop))
    delay = first_delay
    while True:
        try:
            return operation()
        except transient as exc:
            if should_stop():
                raise Interrupted(what) from exc
            log.warning("%s failed (%s); retrying in %.1fs (nothing is committed until it succeeds)",
                        what, describe(exc), delay)
            wait(delay)
            delay = min(delay * 2, max_delay)


class Ingestor:
    """Stores batches one at a time in the background and commits each once it is fully handled."""

    def __init__(self, *, consumer, collection, dlq_producer, dlq_topic, group, should_stop, on_batch=None):
        self.consumer = consumer
        self.collection = collection
        self.dlq_producer = dlq_producer
        self.dlq_topic = dlq_topic
        self.group = group
        self.should_stop = should_stop
        self.on_batch = on_batch
        self.totals = BatchResult()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")
        self._in_flight = None  # (future, records)

    def submit(self, records):
        """Decode and validate here, then hand the write to the worker once the previous batch is done."""
        accepted, rejected = decode_records(records)
        documents = build_documents(accepted)
        self.finish_in_flight()
        self._in_flight = (self._worker.submit(self._store, documents, rejected, len(records)), records)

    def _store(self, documents, rejected, received):
        started = time.monotonic()
        stored, duplicates = retry_until_done(
            lambda: write_documents(self.collection, documents), what="writing to MongoDB", should_stop=self.should_stop)
        write_seconds = time.monotonic() - started
        if rejected:
            retry_until_done(lambda: dead_letter(self.dlq_producer, self.dlq_topic, rejected, group=self.group),
                             what="publishing rejects to the dead-letter topic", should_stop=self.should_stop)
            for reject in rejected:
                log.info("dead-lettered %s[%d]@%d: %s", reject.record.topic, reject.record.partition,
                         reject.record.offset, reject.reason)
        return BatchResult(received=received, stored=stored, duplicates=duplicates, dead_lettered=len(rejected)), write_seconds

    @property
    def busy(self):
        return self._in_flight is not None

    def finish_in_flight(self, *, commit=True):
        """Wait for the batch in flight, then commit its offsets (on this, the consumer's, thread)."""
        if self._in_flight is None:
            return
        future, records = self._in_flight
        self._in_flight = None
        result, write_seconds = future.result()  # Interrupted propagates: nothing gets committed
        if commit:
            self.commit(records)
        self.totals.add(result)
        if self.on_batch:
            self.on_batch(result, write_seconds)

    def commit(self, records):
        try:
            self.consumer.commit(offsets_to_commit(records))
        except CommitFailedError:
            log.warning("partitions were reassigned before the commit; their events will be redelivered "
                        "and skipped as duplicates")
        except KafkaError as exc:
            # Commits are cumulative: the next successful one covers this batch too, and a crash
            # before then only replays events that the eventId index turns into duplicates.
            log.warning("offset commit failed (%s); the next commit covers it", describe(exc))

    def close(self):
        self._worker.shutdown(wait=True)


class _FinishBeforeRevoke(ConsumerRebalanceListener):
    """Commit the batch in flight before partitions move to another group member."""

    def __init__(self, ingestor, on_assigned):
        self.ingestor = ingestor
        self.on_assigned = on_assigned

    def on_partitions_revoked(self, revoked):
        if revoked:
            # kafka-python 3 calls listeners on its I/O thread, where a blocking commit raises. The batch
            # is stored; its offsets stay uncommitted, so the next owner reads it again and skips it as replays.
            self.ingestor.finish_in_flight(commit=False)

    def on_partitions_assigned(self, assigned):
        log.info("assigned partitions: %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "none")
        liveness.mark_ready()
        self.on_assigned()


def consumer_lag(consumer):
    """Messages behind the end of each assigned partition, from what the last fetch reported."""
    lag = {}
    for partition in consumer.assignment():
        highwater = consumer.highwater(partition)
        if highwater is not None:
            lag[partition.partition] = max(highwater - consumer.position(partition), 0)
    return lag


def consume_activity(*, consumer, collection, dlq_producer, topic, dlq_topic, group, should_stop,
                     idle_timeout=None, batch_size=500, summary_every=10.0, on_batch=None, on_lag=None,
                     on_summary=None):
    """Consume `topic` until `should_stop()` or `idle_timeout` seconds without events; returns totals.

    Reports through callbacks: `on_batch(result, write_seconds)` after each committed batch,
    `on_lag({partition: lag})` about once a second, `on_summary(totals, previous, lag, seconds)`
    every `summary_every` seconds.
    """
    ingestor = Ingestor(consumer=consumer, collection=collection, dlq_producer=dlq_producer,
                        dlq_topic=dlq_topic, group=group, should_stop=should_stop, on_batch=on_batch)
    last_activity = None  # the idle clock starts when the group assigns us partitions

    def activity():
        nonlocal last_activity
        last_activity = time.monotonic()

    consumer.subscribe([topic], listener=_FinishBeforeRevoke(ingestor, on_assigned=activity))
    next_summary = time.monotonic() + summary_every
    next_lag = time.monotonic()
    summarized = BatchResult()
    try:
        while not should_stop():
            batches = consumer.poll(timeout_ms=500, max_records=batch_size)
            liveness.beat()
            records = [record for partition_records in batches.values() for record in partition_records]
            if records:
                activity()
                ingestor.submit(records)
            elif ingestor.busy:
                ingestor.finish_in_flight()
            now = time.monotonic()
            if on_lag and now >= next_lag:
                on_lag(consumer_lag(consumer))
                next_lag = now + 1.0
            if now >= next_summary and on_summary:
                on_summary(ingestor.totals, summarized, consumer_lag(consumer), now - next_summary + summary_every)
                summarized = BatchResult(**vars(ingestor.totals))
                next_summary = now + summary_every
            idle = idle_timeout is not None and last_activity is not None and now - last_activity >= idle_timeout
            if idle and not ingestor.busy:
                log.info("no events for %.0fs: stopping (--idle-timeout)", idle_timeout)
                break
        ingestor.finish_in_flight()
    finally:
        ingestor.close()
    return ingestor.totals
