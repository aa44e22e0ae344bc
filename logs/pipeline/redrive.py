"""Dead letters back onto their source topic: the service behind `python manage.py redrive_dead_letters`
(docs/contract.md "Commands"; the choices: docs/decisions/0016-redrive-send-then-commit-a-group-per-filter.md).

A run reads KAFKA_DLQ_TOPIC in a consumer group of its own, from the group's committed position up to the
end of each partition as its first fetch reports it, and exits. Each record is either re-driven (its
original key, value and headers, `dlq.*` removed, `dlq.redrive.attempt` counted up) or skipped with a
reason and left where it is:

    read a batch → plan each record (`plan`: a Copy or a Skip) → send the copies and wait for every
    acknowledgement → commit the batch's offsets (`Redrive.handle` states the guarantee)

The consumer stores each eventId once and skips exact replays, so a copy sent twice (a crash between the
send and the commit, two runs in different groups) is harmless; a record invalid again comes back to the
dead-letter topic with its new reason and its count, and stops being re-driven at `--max-attempts`.
"""

import hashlib
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from kafka.errors import (
    AuthorizationError,
    CorruptRecordError,
    InvalidRecordError,
    InvalidTimestampError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    SaslAuthenticationFailedError,
)
from kafka.structs import OffsetAndMetadata, TopicPartition

from ..events import bounded_reason, quoted
from . import dead_letter_headers as dlq
from .broker import (
    create_consumer,
    create_producer,
    redrive_grants,
    redrive_group,
    refusal_advice,
    refuses_client,
    topic_configuration_errors,
)
from .consuming import Interrupted, retry_until_done
from .failures import StopConsuming, Transient, classify, describe
from .kafka_internals import abandon_producer

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 3
# How long one call to the broker may block before it counts as a transient failure, so that a stop
# request is heard while the broker is away.
CALL_TIMEOUT_MS = 5_000
# Distinct reasons (and skip causes) the summary counts one by one; the rest are added up under OTHER.
MAX_TALLIED = 200
OTHER = "(other reasons)"
# Cut copies whose source coordinates the summary lists, per reason.
MAX_LISTED_ORIGINALS = 10
# What one fetch may bring: with the batch in hand and the producer's buffer, it bounds the memory of a run
# over a dead-letter topic of records near the broker's size limit.
FETCH_MAX_BYTES = 16 * 1024 * 1024
# Errors of one record, never of the run: the source topic refuses that copy (too large for it, ...).
RECORD_REFUSALS = (MessageSizeTooLargeError, InvalidRecordError, InvalidTimestampError)

# Why a record is left on the dead-letter topic.
NO_SOURCE = "no source topic (dlq.source.topic): not a copy the consumer wrote"
SOURCE_IS_DLQ = "its source topic is the dead-letter topic itself"
NULL_VALUE = "the original value was null: never an event"
CUT = "cut copy: the whole original is on the source topic"
MALFORMED = "malformed dlq.* headers: not a copy the consumer wrote"


@dataclass(frozen=True)
class Copy:
    """A dead letter as it goes back to its source topic."""

    key: bytes | None
    value: bytes
    headers: list
    timestamp_ms: int | None
    nulls_sent_empty: int = 0  # original null header values, sent empty: kafka-python sends no null header value


@dataclass(frozen=True)
class Skip:
    """A dead letter left where it is, and why."""

    why: str
    original: str | None = None  # topic[partition]@offset of the whole original of a cut copy


def plan(record, *, source, dlq_topic, max_attempts):
    """The Copy that puts a dead-letter `record` back on `source`, or the Skip that says why it cannot be.

    The copy carries the record's key, value and non-`dlq.*` headers unchanged and the count of re-drives
    so far plus one; its timestamp is the dead-letter copy's, the closest to the original's that survives.
    """
    kept, own = [], {}
    for name, value in record.headers or ():
        if dlq.is_dead_letter_header(name):
            own.setdefault(name, []).append(value)
        else:
            kept.append((name, value))
    if any(len(values) > 1 for values in own.values()):
        return Skip(MALFORMED)
    own = {name: values[0] for name, values in own.items()}
    source_topic = _text(own.get(dlq.SOURCE_TOPIC))
    if not source_topic:
        return Skip(NO_SOURCE)
    if source_topic == dlq_topic:
        return Skip(SOURCE_IS_DLQ)
    if source_topic != source:
        return Skip(f"its source topic {quoted(source_topic)} is not KAFKA_TOPIC ({source})")
    if dlq.ORIGINAL_TRUNCATED in own:
        return Skip(CUT, original=f"{source_topic}[{_number(own.get(dlq.SOURCE_PARTITION))}]"
                                  f"@{_number(own.get(dlq.SOURCE_OFFSET))}")
    nulls = _null_marks(own.get(dlq.ORIGINAL_NULL), headers=len(kept))
    if nulls is None:
        return Skip(MALFORMED)
    if record.value is None or dlq.NULL_VALUE in nulls:  # a null value in a copy: an older consumer wrote it
        return Skip(NULL_VALUE)
    done = dlq.redrive_attempt([(dlq.REDRIVE_ATTEMPT, own[dlq.REDRIVE_ATTEMPT])]) if dlq.REDRIVE_ATTEMPT in own else 0
    if done is None:
        return Skip(MALFORMED)
    if done >= max_attempts:
        return Skip(f"re-driven {done} times already (--max-attempts {max_attempts})")
    return Copy(key=record.key, value=record.value, headers=[*kept, dlq.redrive_attempt_header(done + 1)],
                timestamp_ms=record.timestamp if record.timestamp is not None and record.timestamp >= 0 else None,
                nulls_sent_empty=len(nulls) - (dlq.NULL_VALUE in nulls))


def reason_of(record):
    """The dead-letter reason of `record`, as text ("(no reason)" when it has none)."""
    values = [value for name, value in record.headers or () if name == dlq.REASON]
    return bounded_reason((values[0] or b"").decode("utf-8", "replace")) if values else "(no reason)"


def _text(value):
    try:
        return value.decode("utf-8") if value is not None else None
    except UnicodeDecodeError:
        return None


def _number(value):
    text = _text(value)
    return text if text is not None and text.isascii() and text.isdigit() and len(text) < 20 else "?"


def _null_marks(value, *, headers):
    """The set of `dlq.original.null` marks (`value`, `header:<i>` with i < `headers`); None if malformed."""
    if value is None:
        return set()
    marks = set((_text(value) or "\0").split(","))
    for mark in marks:
        index = mark.removeprefix(dlq.NULL_HEADER_PREFIX)
        if mark != dlq.NULL_VALUE and not (index != mark and index.isascii() and index.isdigit()
                                           and len(index) < 6 and int(index) < headers):
            return None
    return marks


@dataclass
class ReasonTally:
    """What a run did with the dead letters of one reason."""

    redriven: int = 0
    skipped: Counter = field(default_factory=Counter)  # why -> records
    originals: list = field(default_factory=list)  # where the first cut copies' originals are
    cut: int = 0


@dataclass
class Summary:
    """What a run read, re-drove and skipped, by dead-letter reason."""

    source: str
    dlq_topic: str
    group: str
    reason: str | None = None
    dry_run: bool = False
    to_read: int = 0  # records from the start positions to the end offsets seen at start
    read: int = 0
    redriven: int = 0
    skipped: int = 0
    other_reasons: int = 0  # records whose reason does not contain --reason: left for other runs
    nulls_sent_empty: int = 0
    uncommitted: int = 0  # sent, acknowledged or not, but not committed when the run stopped
    stopped: str | None = None  # why the run ended before the end offsets, if it did
    by_reason: dict = field(default_factory=dict)

    def tally(self, reason):
        if reason not in self.by_reason and len(self.by_reason) >= MAX_TALLIED:
            reason = OTHER
        return self.by_reason.setdefault(reason, ReasonTally())

    def count(self, reason, outcome):
        tally = self.tally(reason)
        if isinstance(outcome, Copy):
            tally.redriven += 1
            self.redriven += 1
            self.nulls_sent_empty += outcome.nulls_sent_empty
            return
        self.skipped += 1
        why = outcome.why if outcome.why in tally.skipped or len(tally.skipped) < MAX_TALLIED else OTHER
        tally.skipped[why] += 1
        if outcome.original is not None:
            tally.cut += 1
            if len(tally.originals) < MAX_LISTED_ORIGINALS:
                tally.originals.append(outcome.original)


def run_group(reason=None):
    """The group a run keeps its position in: `redrive_group()`, or for a `--reason` run a group of its own
    under it, so that the records it passes over stay unread for runs with another filter
    (docs/decisions/0016-redrive-send-then-commit-a-group-per-filter.md)."""
    if reason is None:
        return redrive_group()
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", reason).strip("-")[:40]
    return f"{redrive_group()}.reason.{readable}-{hashlib.sha256(reason.encode('utf-8')).hexdigest()[:12]}"


def configuration_errors(*, source, dlq_topic, consumer_group, group, max_attempts, limit, reason):
    """What makes a run impossible before any client is built, as one line each."""
    errors = topic_configuration_errors(source, dlq_topic)
    if group == consumer_group:
        errors.append(f"KAFKA_REDRIVE_GROUP equals KAFKA_CONSUMER_GROUP ({group}): the re-drive would move the "
                      "consumer's offsets; set another group, or unset it")
    if not 1 <= max_attempts <= dlq.MAX_REDRIVE_ATTEMPTS:
        errors.append(f"--max-attempts must be from 1 to {dlq.MAX_REDRIVE_ATTEMPTS}")
    if limit is not None and limit < 1:
        errors.append("--limit must be at least 1")
    if reason is not None and not reason:
        errors.append("--reason must not be empty (leave it out to re-drive every reason)")
    return errors


class Redrive:
    """One run: the clients, the positions, and the summary it builds."""

    def __init__(self, *, consumer, producer, source, dlq_topic, summary, should_stop):
        self.consumer, self.producer = consumer, producer
        self.source, self.dlq_topic = source, dlq_topic
        self.summary = summary
        self.should_stop = should_stop
        self.starts, self.ends = {}, {}  # partition -> first offset read, end offset (known after its first fetch)
        self.listed_ends = {}
        self.committed = {}  # partition -> offset this run last saw committed (its own commits included)

    def run(self, *, reason, max_attempts, limit, batch_size, on_progress, progress_every):
        """Read, plan and handle batches until every partition reaches its end, a stop is requested or
        `limit` records are re-driven; then, having read to the end, `finish`."""
        summary = self.summary
        next_progress = time.monotonic() + progress_every
        while not self.done():
            if self.should_stop():
                summary.stopped = "stop requested"
                return
            planned = self.plan_batch(self.read(batch_size), reason=reason, max_attempts=max_attempts)
            kept = planned if limit is None else self.within_limit(planned, limit - summary.redriven)
            if kept:
                self.handle(kept, dry_run=summary.dry_run)
            if limit is not None and (len(kept) < len(planned) or summary.redriven >= limit):
                summary.stopped = f"--limit {limit} reached"
                return
            if on_progress is not None and time.monotonic() >= next_progress:
                on_progress(summary)
                next_progress = time.monotonic() + progress_every
        if not summary.dry_run:
            self.finish()

    def call(self, operation, *, what):
        """`operation` retried while it fails transiently; a refusal or another error stops the run."""
        def run():
            try:
                return operation()
            except Exception as exc:
                failure = self.failure(exc, what=what)
                if failure is None:
                    raise
                raise failure from exc
        return retry_until_done(run, what=what, should_stop=self.should_stop)

    def failure(self, exc, *, what):
        """Transient or StopConsuming for a kafka-python error, a refusal naming the ACLs this command needs;
        None for an error no library raised (a bug: it goes through)."""
        if isinstance(exc, (Transient, StopConsuming, Interrupted)):
            return exc
        if isinstance(exc, (AuthorizationError, SaslAuthenticationFailedError)) or (
                self.producer is not None and refuses_client(self.producer, exc)):
            return StopConsuming(f"{what}: {refusal_advice(exc, grants=redrive_grants)}")
        return classify(exc, what=what)

    def partitions(self, topic):
        partitions = self.call(lambda: self.consumer.partitions_for_topic(topic), what=f"looking up topic {topic}")
        if not partitions:
            raise StopConsuming(f"topic {topic} does not exist or the Kafka user may not describe it: grant "
                                f"{redrive_grants()} (docs/operations.md, Secured Kafka)")
        return [TopicPartition(topic, number) for number in sorted(partitions)]

    def start(self, *, floor_group=None):
        """Assign every partition of the dead-letter topic at the group's committed offset. A partition the
        group never committed on starts where `floor_group` stands (a `--reason` run starts where the
        unfiltered runs are), else at its beginning."""
        self.partitions(self.source)  # the destination exists and is visible, before anything is read
        partitions = self.partitions(self.dlq_topic)
        what = f"reading the committed offsets of group {self.summary.group}"
        self.committed = self.call(lambda: self.committed_offsets(self.consumer, partitions), what=what)
        floor = {}
        if floor_group is not None and None in self.committed.values():
            reader = create_consumer(group_id=floor_group, client_id="activity-redrive-floor", enable_auto_commit=False)
            try:
                floor = self.call(lambda: self.committed_offsets(reader, partitions),
                                  what=f"reading the committed offsets of group {floor_group}")
            finally:
                reader.close(autocommit=False)
        self.consumer.assign(partitions)
        for partition in partitions:
            first = self.committed[partition] if self.committed[partition] is not None else floor.get(partition)
            if first is None:
                self.consumer.seek_to_beginning(partition)
            else:  # below the beginning (retention deleted it), the consumer resets to the beginning
                self.consumer.seek(partition, first)
        self.starts = self.call(lambda: {partition: self.consumer.position(partition, timeout_ms=CALL_TIMEOUT_MS)
                                         for partition in partitions},
                                what=f"reading the first offsets of {self.dlq_topic}")
        # Only for the progress total until each partition's first fetch gives its end (see `read`).
        self.listed_ends = self.call(lambda: self.consumer.end_offsets(partitions, timeout_ms=CALL_TIMEOUT_MS),
                                     what=f"reading the end offsets of {self.dlq_topic}")
        self.count_to_read()

    def count_to_read(self):
        self.summary.to_read = sum(max(self.ends.get(partition, self.listed_ends[partition]) - start, 0)
                                   for partition, start in self.starts.items())

    @staticmethod
    def committed_offsets(consumer, partitions):
        return {partition: consumer.committed(partition, timeout_ms=CALL_TIMEOUT_MS) for partition in partitions}

    def done(self):
        return len(self.ends) == len(self.starts) and self.consumer.paused() >= set(self.ends)

    def read(self, batch_size):
        """The next records below each partition's end: the high watermark of the first fetch of it.

        Not ListOffsets: Tansu answers it with the base offset of the last batch plus one, short of the end
        when that batch holds several records; a fetch's high watermark is the end on every broker.
        A partition that reaches its end is paused.
        """
        try:
            batches = self.call(lambda: self.consumer.poll(timeout_ms=500, max_records=batch_size),
                                what=f"reading {self.dlq_topic}")
        except StopConsuming as exc:
            if not isinstance(exc.__cause__, CorruptRecordError):
                raise
            # Not a batch the consumer writes (its copies carry UTF-8 header names only): one it cannot re-drive.
            at = ", ".join(f"{partition.partition}@{self.consumer.position(partition, timeout_ms=CALL_TIMEOUT_MS)}"
                           for partition in sorted(set(self.starts) - self.consumer.paused()))
            raise StopConsuming(
                f"reading {self.dlq_topic}: kafka-python cannot decode a record batch ({describe(exc.__cause__)}) at "
                f"one of partition@offset {at}; find it with kafka-console-consumer, then move group "
                f"{self.summary.group} past it (kafka-consumer-groups --reset-offsets --to-offset) and run again"
            ) from exc.__cause__
        for partition in set(self.starts) - set(self.ends):
            if (highwater := self.consumer.highwater(partition)) is not None:
                self.ends[partition] = highwater
                self.count_to_read()
        for partition, partition_records in batches.items():  # a fetch without a high watermark: its records count
            self.ends.setdefault(partition, partition_records[-1].offset + 1)
        records = [record for partition, partition_records in batches.items()
                   for record in partition_records if record.offset < self.ends[partition]]
        for partition in set(self.ends) - self.consumer.paused():
            if self.consumer.position(partition, timeout_ms=CALL_TIMEOUT_MS) >= self.ends[partition]:
                self.consumer.pause(partition)
        return records

    def plan_batch(self, records, *, reason, max_attempts):
        """Step 1 of `handle`: (record, its reason, a Copy, a Skip, or None when `reason` leaves it to other runs)."""
        planned = []
        for record in records:
            why = reason_of(record)
            outcome = None if reason is not None and reason not in why else plan(
                record, source=self.source, dlq_topic=self.dlq_topic, max_attempts=max_attempts)
            planned.append((record, why, outcome))
        return planned

    @staticmethod
    def within_limit(planned, copies):
        """The planned records up to the `copies`-th Copy. The run ends after them, so that no commit passes
        over the records left out: the next run reads them."""
        for index, (_, _, outcome) in enumerate(planned):
            copies -= isinstance(outcome, Copy)
            if copies == 0:
                return planned[:index + 1]
        return planned

    def handle(self, planned, *, dry_run):
        """Re-drive or skip every planned record of a batch, then commit the batch's offsets.

        1. Plan each record (`plan_batch`): a Copy for the source topic, or a Skip with why; a record whose reason
           does not contain `--reason` is neither: it is counted, and left for runs with another filter.
        2. Send every copy (acks=all, idempotent producer) and wait for every acknowledgement, retrying
           transient failures; a copy the source topic refuses for good (too large for it, ...) becomes a Skip.
        3. Commit the batch's offsets in this run's group. A crash before this re-sends the batch on the
           next run: the consumer stores each eventId once and skips exact replays.
        A dry run does 1 only: it publishes nothing and commits nothing.
        """
        copies = [index for index, (_, _, outcome) in enumerate(planned) if isinstance(outcome, Copy)]
        if copies and not dry_run:
            self.summary.uncommitted = len(copies)
            refusals = self.send([planned[index][2] for index in copies])
            for index, refusal in zip(copies, refusals):
                if refusal is not None:
                    planned[index] = (*planned[index][:2], Skip(refusal))
        if not dry_run:
            self.commit([record for record, _, _ in planned])
        self.summary.uncommitted = 0
        for _, why, outcome in planned:
            self.summary.read += 1
            if outcome is None:
                self.summary.other_reasons += 1
            else:
                self.summary.count(why, outcome)

    def send(self, copies):
        """Step 2 of `handle`: for each copy, None once acknowledged, or why the source topic refused it."""
        refusals, pending = [None] * len(copies), list(range(len(copies)))
        what = f"re-driving to {self.source}"

        def attempt():
            futures = {}
            for index in pending:
                copy = copies[index]
                try:
                    futures[index] = self.producer.send(self.source, key=copy.key, value=copy.value,
                                                        headers=copy.headers, timestamp_ms=copy.timestamp_ms)
                except RECORD_REFUSALS as exc:
                    refusals[index] = f"{self.source} refuses it ({describe(exc)})"
            self.flush()
            retry = []
            for index, future in futures.items():
                if future.succeeded():
                    continue
                exc = future.exception
                if isinstance(exc, RECORD_REFUSALS):
                    refusals[index] = f"{self.source} refuses it ({describe(exc)})"
                elif isinstance(exc, KafkaError) and exc.retriable and not refuses_client(self.producer, exc):
                    retry.append(index)
                else:
                    raise self.failure(exc, what=what) or exc
            pending[:] = retry
            if retry:
                first = describe(futures[retry[0]].exception)
                raise Transient(f"{what}: {len(retry)} copies not acknowledged ({first})")

        self.call(attempt, what=what)
        return refusals

    def flush(self):
        """Wait for the producer's acknowledgements, hearing a stop request within a second."""
        while True:
            try:
                self.producer.flush(timeout=1)
                return
            except KafkaTimeoutError:
                if self.should_stop():
                    raise Interrupted(f"re-driving to {self.source}") from None

    def commit(self, records):
        """Step 3 of `handle`, after checking that no other run moved the group meanwhile."""
        offsets = {}
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            offsets[partition] = max(offsets.get(partition, 0), record.offset + 1)
        self.commit_offsets(offsets)

    def commit_offsets(self, offsets):
        offsets = {partition: offset for partition, offset in offsets.items() if offset != self.committed[partition]}
        if not offsets:
            return
        group = self.summary.group
        now = self.call(lambda: self.committed_offsets(self.consumer, list(offsets)),
                        what=f"reading the committed offsets of group {group}")
        moved = [f"{partition.partition}: {self.committed[partition]} → {offset}"
                 for partition, offset in now.items() if offset != self.committed[partition]]
        if moved:
            raise StopConsuming(f"another run is re-driving with group {group} (its offsets moved: "
                                f"{', '.join(moved)}); run one redrive_dead_letters at a time")
        self.call(lambda: self.consumer.commit({partition: OffsetAndMetadata(offset, "", -1)
                                                for partition, offset in offsets.items()}, timeout_ms=CALL_TIMEOUT_MS),
                  what=f"committing the offsets of group {group}")
        self.committed.update(offsets)

    def finish(self):
        """After the last batch: commit the end offsets of partitions read to their end (past any offsets that
        held no record, such as transaction markers)."""
        self.commit_offsets({partition: end for partition, end in self.ends.items()
                             if self.consumer.position(partition, timeout_ms=CALL_TIMEOUT_MS) >= end
                             and (self.committed[partition] or 0) < end})


def redrive_dead_letters(*, source, dlq_topic, reason=None, max_attempts=DEFAULT_MAX_ATTEMPTS, limit=None,
                         dry_run=False, should_stop=lambda: False, on_progress=None, progress_every=1.0,
                         batch_size=500):
    """Re-drive the dead letters of `dlq_topic` back to `source` (KAFKA_TOPIC), from this run's group's position
    to the end of each partition seen by its first fetch; returns the Summary.

    `reason`: only records whose reason contains it (in a group of its own); `limit`: at most this many
    re-driven; `dry_run`: plan only. Stops cleanly when `should_stop()`: what was acknowledged is committed,
    and a stop while a step was still failing leaves that batch uncommitted (`Summary.stopped` says so).
    Raises StopConsuming for a configuration error or a refusal (one line naming the ACL).
    """
    base = redrive_group()
    if errors := configuration_errors(source=source, dlq_topic=dlq_topic, consumer_group=settings.KAFKA_CONSUMER_GROUP,
                                      group=base, max_attempts=max_attempts, limit=limit, reason=reason):
        raise StopConsuming("; ".join(errors))
    group = run_group(reason)
    summary = Summary(source=source, dlq_topic=dlq_topic, group=group, reason=reason, dry_run=dry_run)
    # Read uncommitted: the consumer's dead-letter producer is not transactional, and a transaction some other
    # writer left open would hold a read_committed run at the last stable offset, short of the end it waits for.
    consumer = create_consumer(group_id=group, client_id="activity-redrive", enable_auto_commit=False,
                               fetch_max_bytes=FETCH_MAX_BYTES, isolation_level="read_uncommitted")
    producer = None
    try:
        if not dry_run:
            # A send waits for the topic's metadata at most one call's time, so that a stop is heard meanwhile.
            producer = create_producer(client_id="activity-redrive", linger_ms=5, max_block_ms=CALL_TIMEOUT_MS)
        run = Redrive(consumer=consumer, producer=producer, source=source, dlq_topic=dlq_topic, summary=summary,
                      should_stop=should_stop)
        run.start(floor_group=base if reason is not None else None)
        run.run(reason=reason, max_attempts=max_attempts, limit=limit, batch_size=batch_size,
                on_progress=on_progress, progress_every=progress_every)
    except Interrupted as exc:
        summary.stopped = (f"stopped while {exc} was still failing; the {summary.uncommitted} copies of that batch are "
                           "not committed and the next run sends them again")
    except StopConsuming as exc:
        done = (f"dead letters re-driven and committed before this: {summary.redriven}" if summary.redriven
                else "nothing was re-driven")
        raise StopConsuming(f"{exc}; {done}") from exc
    finally:
        try:
            consumer.close(autocommit=False)
        finally:
            if producer is not None:
                close_producer(producer, waiting=summary.uncommitted)
    return summary


def close_producer(producer, *, waiting):
    """Close the producer; with copies `waiting` for an acknowledgement (a stop in the middle of a batch), at
    once: they are not committed, and the next run sends them again."""
    if waiting:
        abandon_producer(producer)
        log.warning("%d copies were not acknowledged when the run stopped; they are not committed and the next "
                    "run sends them again", waiting)
    else:
        producer.close(timeout=10)
