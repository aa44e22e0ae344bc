"""The consume loop: poll a batch, ingest it (the delivery guarantee, in `Ingestor.ingest`), repeat.

One batch is in flight at a time: while it is written on one worker thread, the next one is
polled and decoded, so the consumer runs at the speed of its slowest stage (the database), not
the sum of them (docs/decisions/0010-one-batch-in-flight.md; `make bench-ingest` measures both).
The Kafka consumer is only ever touched from the calling thread.
"""

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kafka import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, CorruptRecordError, KafkaError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata

from . import liveness, metrics
from .broker import BrokerUnavailable
from .failures import Rejected, StopConsuming, Transient, classify, describe
from .ingestion import BatchResult, build_documents, dead_letter, decode_records, offsets_to_commit, write_documents
from .kafka_internals import FetchFailed, fetch_records, rejoin_after_a_dropped_rebalance
from .record_batches import UnreadableBatch, read_batch

log = logging.getLogger(__name__)

SUMMARY_EVERY_SECONDS = 10.0
# While batches keep coming, the offsets of stored batches are committed together at most this often (Kafka's
# own auto-commit interval): a synchronous commit is the costliest call the loop makes per batch, and a crash or
# a rebalance only replays a little more, which the idempotent write skips (docs/decisions/0021-commit-cadence.md).
COMMIT_EVERY_SECONDS = 5.0
# How long one partition is read by the probe of `undecodable_records` before it counts as readable.
PROBE_SECONDS = 5.0
# A partition with records behind whose position has not moved for this long is probed (the default of
# `StuckPartitions`'s stall_seconds).
STALL_SECONDS = 30.0
RAW_FETCH_TIMEOUT_MS = 10_000
# The broker answers with the first batch whole however large it is (KIP-74); the rest is held compressed
# in memory, so little more than one batch is asked for.
RAW_FETCH_MAX_BYTES = 1024 * 1024


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
    open_reader: object  # () -> a KafkaConsumer outside the group, for `undecodable_records`
    max_clock_skew_seconds: int  # ACTIVITY_MAX_CLOCK_SKEW_SECONDS: how far an event may run ahead of its record
    max_record_bytes: int  # KAFKA_MAX_RECORD_BYTES: a longer record is dead-lettered by reference


class Ingestor:
    """Turns each polled batch into stored logs and dead letters, then commits it."""

    def __init__(self, pipeline, *, should_stop, commit_every=COMMIT_EVERY_SECONDS, clock=time.monotonic):
        self.pipeline = pipeline
        self.should_stop = should_stop
        self.totals = BatchResult()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")
        self._in_flight = None  # (future of steps 3-4, records)
        self._committed = {}  # TopicPartition -> the group's commit there, as this process last knew it
        self._due = {}  # TopicPartition -> OffsetAndMetadata of batches done (step 5) and not committed yet
        self._commit_every, self._clock = commit_every, clock
        self._next_commit = clock() + commit_every
        self._waiting_for_rebalance = False  # a commit was refused for a rebalance and none has succeeded since

    def ingest(self, records, rejected=()):
        """Store or dead-letter every record of the batch, then commit its offsets.

        1. Decode and validate each record: an ActivityEvent, or a rejection with its reason (never an exception).
        2. Build one insert per event: `_id` is the eventId, with the digest of its content.
        3. Bulk-write them, unordered, retrying transient failures. A duplicate `_id` with the same
           digest is a replay, skipped; with another digest, and any document the server will never
           accept, it becomes a rejection with that reason. The rest of the batch is stored.
        4. Dead-letter every rejection (a bounded copy with `dlq.*` headers) and wait for the
           broker's acknowledgements, retrying transient failures.
        5. Commit the batch's offsets, once 3 and 4 are done (`finish`: before the next batch is
           handed to the worker, and at stop). While batches keep coming, those of `commit_every` seconds
           are committed together; whenever a poll finds nothing new, and at stop, all of them. A crash before
           this replays the batches, which step 3 makes harmless; so does a rebalance, which finishes the batch
           without committing it.

        Steps 3 and 4 run on the worker thread, so the next batch is polled and decoded meanwhile.
        `rejected` are records of the same batch already refused by `record_batches`.
        """
        accepted, refused = decode_records(records, max_clock_skew_seconds=self.pipeline.max_clock_skew_seconds)
        documents = build_documents(accepted)
        self.finish()
        self._in_flight = (self._worker.submit(self._store, accepted, [*rejected, *refused], documents),
                           [*records, *(reject.record for reject in rejected)])

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
        return (BatchResult(received=received, stored=written.stored, duplicates=written.duplicates,
                            dead_lettered=len(rejected)), write_seconds, [reject.reason for reject in rejected])

    @property
    def busy(self):
        return self._in_flight is not None

    def finish(self, *, commit=True, now=False):
        """Step 5 of `ingest` for the batch in flight: wait for it, then commit (on the consumer's thread) the
        offsets of the batches done so far, once `commit_every` seconds have passed since the last commit, or
        `now`.

        `commit=False` in a rebalance: kafka-python 3 runs rebalance listeners on its IO thread,
        where a blocking commit is refused; the partitions' next owner reads the batches not committed yet
        again and step 3 turns them into skipped replays.
        """
        if self._in_flight is not None:
            future, records = self._in_flight
            self._in_flight = None
            # Interrupted and StopConsuming propagate: nothing more is committed.
            result, write_seconds, reasons = future.result()
            if commit:
                self._due.update(offsets_to_commit(records))
            self.totals.add(result)
            metrics.record_batch(received=result.received, stored=result.stored, duplicates=result.duplicates,
                                 dead_letter_reasons=reasons, write_seconds=write_seconds)
        if not commit:
            self._due.clear()  # the partitions are moving to their next owner, which reads from the group's commit
        elif self._due and (now or self._clock() >= self._next_commit):
            due, self._due = self._due, {}
            self._commit(due)
            self._next_commit = self._clock() + self._commit_every

    def commit_positions(self):
        """With no batch in flight, commit each assigned partition's position where it is past the group's
        commit there (as this process first read it, or last made it): the consumer read past records that are
        not events (transaction markers, aborted transactions), so none of them reached a batch. Without it the
        group's commit stays short of the end of a partition that a transaction marker ends, and Kafka's own
        lag tools report it behind for good."""
        self.finish(now=True)
        consumer, ahead = self.pipeline.consumer, {}
        try:
            for partition in consumer.assignment() - consumer.paused():
                if partition not in self._committed:  # once per partition: the group's commit, 0 for none
                    self._committed[partition] = consumer.committed(partition, timeout_ms=1000) or 0
                position = consumer.position(partition, timeout_ms=1000)
                if position is not None and position > self._committed[partition]:
                    ahead[partition] = OffsetAndMetadata(position, "", -1)
        except KafkaError as exc:  # the broker is away: tried again at the next idle poll
            log.debug("positions unknown: %s", describe(exc))
            return
        if ahead:
            self._commit(ahead)

    def _commit(self, offsets):
        try:
            self.pipeline.consumer.commit(offsets)
            self._committed.update({partition: meta.offset for partition, meta in offsets.items()})
            self._waiting_for_rebalance = False
        except CommitFailedError:
            log.warning("partitions were reassigned before the commit; their events will be redelivered "
                        "and skipped as replays")
        except RebalanceInProgressError:
            # Not a refusal: this member is between generations, and kafka-python refuses the commit without
            # asking the broker. The offsets are kept for the first commit after the rebalance (each idle poll
            # tries, so this is said once), unless a revocation drops them first; a stop before then leaves
            # them to the partitions' next reader, which skips the events as replays.
            for partition, meta in offsets.items():
                self._due.setdefault(partition, meta)
            if not self._waiting_for_rebalance:
                self._waiting_for_rebalance = True
                log.warning("the group is rebalancing: the commit of %s waits until it is done; if the "
                            "partitions move, their next owner reads those events again and skips them as replays",
                            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(offsets)))
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
        log.info("assigned partitions: %s",
                 ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "none")
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


def undecodable_records(consumer, reader, partitions):
    """{partition: (offset, error)} for those of `partitions` whose next record kafka-python cannot decode.

    kafka-python 3.0.12 decodes every header name as UTF-8 and fails the whole record batch when one
    is not, and its poll raises that error without saying which partition it came from. `reader`, a
    consumer outside the group placed where the consumer stands on each partition, reproduces it.
    """
    positions = {partition: consumer.position(partition, timeout_ms=1000) for partition in partitions}
    found = {}
    if positions:
        ends = reader.end_offsets(list(positions))
        for partition, offset in positions.items():
            if offset is None or offset >= ends.get(partition, 0):
                continue
            reader.assign([partition])
            reader.seek(partition, offset)
            deadline = time.monotonic() + PROBE_SECONDS
            try:
                while not reader.poll(timeout_ms=500, max_records=1) and time.monotonic() < deadline:
                    pass
            except CorruptRecordError as exc:
                found[partition] = (offset, exc)
    return found


def fetch_batch(reader, partition, offset, *, max_record_bytes):
    """The batch at `offset` of `partition` (read committed), fetched as bytes on `reader`, outside the group,
    and read with `record_batches`."""
    try:
        fetched = fetch_records(reader, partition, offset, max_bytes=RAW_FETCH_MAX_BYTES,
                                timeout_ms=RAW_FETCH_TIMEOUT_MS)
    except FetchFailed as exc:
        raise UnreadableBatch(str(exc)) from exc
    return read_batch(fetched.records, topic=partition.topic, partition=partition.partition,
                      aborted_transactions=fetched.aborted_transactions, max_record_bytes=max_record_bytes)


class StuckPartitions:
    """Deals with the partitions whose next record batch kafka-python cannot decode.

    Such a batch is read again with `record_batches`: its records from the stuck offset on are
    ingested (the valid events stored, the rest dead-lettered with their reason) and the consumer
    seeks past the batch. A batch that reader refuses too (damaged) pauses its partition, so that
    the others go on, with one error line saying what an operator can do and the
    `activity_consumer_undecodable_offset` gauge. A partition that stops advancing with records
    behind it, and no error, is probed too.
    """

    def __init__(self, pipeline, *, stall_seconds=STALL_SECONDS):
        self.pipeline = pipeline
        self.stall_seconds = stall_seconds
        self.since = {}  # partition -> (position, when it was first seen there with records behind)
        self.last_watch = None

    def recover(self, partitions):
        """Probe `partitions`; returns [(partition, RawBatch, stuck offset)] for the batches read again,
        after pausing those that cannot be; None when no partition is stuck; [] when the probe cannot reach
        the broker now (it is tried again at the next poll or watch)."""
        consumer, recovered = self.pipeline.consumer, []
        try:
            reader = self.pipeline.open_reader()
        except BrokerUnavailable as exc:  # the broker went away since the poll: probed again at the next turn
            log.warning("cannot probe %s now: %s", ", ".join(f"{p.topic}[{p.partition}]" for p in sorted(partitions)),
                        exc)
            return []
        try:
            found = undecodable_records(consumer, reader, partitions)
            for partition, (offset, exc) in found.items():
                try:
                    batch = fetch_batch(reader, partition, offset, max_record_bytes=self.pipeline.max_record_bytes)
                except KafkaError as failure:
                    if not failure.retriable:
                        raise StopConsuming(f"reading {partition.topic}[{partition.partition}]@{offset} as bytes: "
                                            f"Kafka refused it ({describe(failure)})") from failure
                    log.warning("reading %s[%d]@%d as bytes failed (%s); tried again at the next poll",
                                partition.topic, partition.partition, offset, describe(failure))
                except UnreadableBatch as unreadable:
                    self._pause(partition, offset, f"{describe(exc)}; read as bytes: {unreadable}")
                else:
                    recovered.append((partition, batch, offset))
        finally:
            reader.close()
        return recovered if found else None

    def _pause(self, partition, offset, why):
        consumer = self.pipeline.consumer
        consumer.pause(partition)
        metrics.record_undecodable(partition=partition.partition, offset=offset)
        where = f"{partition.topic}[{partition.partition}]@{offset}"
        log.error(
            "%s: this record's batch cannot be decoded (%s); partition %d is paused, the others "
            "go on. Nothing from offset %d on is stored until an operator reads what is left of the batch with "
            "another client (kafka-console-consumer --topic %s --partition %d --offset %d --consumer-property "
            "check.crcs=false: Kafka's clients refuse a batch whose CRC fails, as kafka-python does), "
            "re-publishes its valid events, "
            "moves group %s past the batch (kafka-consumer-groups --reset-offsets --to-offset, consumers "
            "stopped) and restarts the consumer", where, why, partition.partition, offset,
            partition.topic, partition.partition, offset, self.pipeline.group)

    def watch(self):
        """Probe the partitions that have had records behind them at the same position for `stall_seconds`."""
        consumer, now = self.pipeline.consumer, time.monotonic()
        if self.last_watch is not None and now - self.last_watch > self.stall_seconds / 4:
            self.since.clear()  # the loop itself was held up (a database outage): not the partitions' doing
        self.last_watch = now
        stalled = []
        try:
            watched = consumer.assignment() - consumer.paused()
            for partition in watched:
                highwater, position = consumer.highwater(partition), consumer.position(partition, timeout_ms=1000)
                seen = self.since.get(partition)
                if highwater is None or position >= highwater:
                    self.since.pop(partition, None)
                elif seen is None or seen[0] != position:
                    self.since[partition] = (position, now)
                elif now - seen[1] >= self.stall_seconds:
                    stalled.append(partition)
                    self.since[partition] = (position, now)
            for partition in set(self.since) - watched:
                del self.since[partition]
            recovered = self.recover(stalled) if stalled else []
            if recovered is None:
                log.warning("partitions %s have not advanced for %.0f s with records behind, and they decode; "
                            "still waiting on them", ", ".join(f"{p.topic}[{p.partition}]" for p in stalled),
                            self.stall_seconds)
            return recovered or []
        except KafkaError as exc:  # the broker is away: watched again once it is back
            log.debug("stall check skipped: %s", describe(exc))
        return []


def ingest_read_again(ingestor, consumer, partition, batch, offset):
    """Ingest the records of a batch `record_batches` read again, from `offset` on, and go past it."""
    if partition not in consumer.assignment():
        return  # moved to another member meanwhile, which meets the batch in its turn
    fresh = [raw for raw in batch.records if raw.record.offset >= offset]
    rejected = [Rejected(raw.record, raw.problem, uninflated=raw.uninflated)
                for raw in fresh if raw.problem is not None]
    if fresh:
        ingestor.ingest([raw.record for raw in fresh if raw.problem is None], rejected)
    consumer.seek(partition, batch.next_offset)
    log.warning("%s[%d]@%d: kafka-python cannot decode this batch (offsets %d-%d); read it as bytes: %d records, "
                "%d of them rejected", partition.topic, partition.partition, offset, batch.base_offset,
                batch.next_offset - 1, len(fresh), len(rejected))


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
    stuck = StuckPartitions(pipeline)
    try:
        while not should_stop():
            recovered = []
            try:
                batches = consumer.poll(timeout_ms=500, max_records=batch_size)
            except CorruptRecordError as exc:
                if (recovered := stuck.recover(consumer.assignment() - consumer.paused())) is None:
                    raise StopConsuming(f"reading {pipeline.topic}: a fetched record batch cannot be decoded and "
                                        f"no assigned partition reproduces it ({describe(exc)})") from exc
                batches = {}
            except KafkaError as exc:  # a refusal (group or topic authorization) stops; the rest is tried again
                failure = classify(exc, what=f"reading {pipeline.topic} as group {pipeline.group}")
                if not isinstance(failure, Transient):
                    raise failure from exc
                log.warning("%s; tried again at the next poll", failure)
                batches = {}
            liveness.beat()
            if group.failure is not None:
                raise group.failure
            records = [record for partition_records in batches.values() for record in partition_records]
            # The lag as of this poll, before the batch is handed over: handing it over waits for the batch
            # before it, which a database outage holds for as long as it lasts, and the gauge must not stay
            # at what it was before the records just read (it is the consumer's own bookkeeping, no request).
            metrics.record_lag(lag_by_partition=consumer_lag(consumer))
            if records:
                group.touch()
                ingestor.ingest(records)
            elif ingestor.busy:
                ingestor.finish(now=True)
            else:
                ingestor.commit_positions()
            if (now := time.monotonic()) >= next_lag:
                if rejoin_after_a_dropped_rebalance(consumer):
                    log.warning("kafka-python left a finished rebalance of group %s unapplied; joining it again",
                                pipeline.group)
                metrics.record_assignment(partitions={partition.partition for partition in consumer.assignment()})
                recovered += stuck.watch()
                next_lag = now + 1.0
            for partition, batch, offset in recovered:
                group.touch()
                ingest_read_again(ingestor, consumer, partition, batch, offset)
            if now >= next_summary:
                rate = (ingestor.totals.received - summarized.received) / (now - next_summary + SUMMARY_EVERY_SECONDS)
                log.info("%s; %.1f events/s; lag %d", describe_totals(ingestor.totals), rate,
                         sum(consumer_lag(consumer).values()))
                summarized = BatchResult(**vars(ingestor.totals))
                next_summary = now + SUMMARY_EVERY_SECONDS
            if idle_timeout is not None and not ingestor.busy and (group.idle_for() or 0) >= idle_timeout:
                log.info("no events for %.0fs: stopping (--idle-timeout)", idle_timeout)
                break
        ingestor.finish(now=True)
    finally:
        ingestor.close()
    return ingestor.totals
