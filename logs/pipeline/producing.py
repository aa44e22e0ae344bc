"""Publishing generated activity to Kafka at a steady rate."""

import math
import time
from collections import deque
from dataclasses import dataclass, field

from kafka.errors import IllegalStateError, KafkaError, KafkaTimeoutError

from . import liveness, metrics
from .broker import refuses_client
from .kafka_internals import producer_broken

MAX_SLEEP_SECONDS = 0.2  # sleep in short steps so a stop request is honoured promptly
MAX_BURST = 1000  # events sent between two looks at the clock and the stop flag
# Above this the n-th event's time, start + n / rate, no longer moves on a float clock that has run for
# days; it is far above what one producer process can send (`make bench-produce`), so nothing real is refused.
MAX_RATE = 1_000_000
STALL_SECONDS = 5.0  # events unacknowledged this long: the broker is away, and the producer says so


class RateSchedule:
    """When each event is due: the n-th (from 0) at start + n / rate.

    Send times are fixed against the clock rather than by sleeping an interval after each send,
    so a late wake-up is caught up on the next turn instead of accumulating into drift.
    """

    def __init__(self, rate, *, start):
        if not 0 < rate <= MAX_RATE:
            raise ValueError(f"rate must be more than 0 and at most {MAX_RATE:,} events per second")
        self.rate = rate
        self.start = start

    def time_of(self, n):
        return self.start + n / self.rate

    def due_by(self, now):
        """How many events (in all, since the start) are due at `now`."""
        if now < self.start:
            return 0
        due = math.floor((now - self.start) * self.rate) + 1
        # Agree with time_of() exactly, whatever the floating-point rounding above did.
        while self.time_of(due) <= now:
            due += 1
        while self.time_of(due - 1) > now:
            due -= 1
        return due


@dataclass
class PublishStats:
    """What the run did, by what Kafka said: an event counts once the broker has acknowledged it."""

    started: float
    finished: float | None = None
    generated: int = 0  # taken from the generator and handed to the producer at least once
    acknowledged: int = 0
    failed: int = 0  # refused for good (an error that no retry can cure)
    resent: int = 0  # handed over again after a retriable failure
    last_acknowledged_at: float | None = None
    errors: list = field(default_factory=list)
    # Kafka refused this client rather than an event (its login, an ACL): every event would be refused
    # the same way, so the run stops; the error, for the one line that says what to change.
    refusal: Exception | None = None

    @property
    def unacknowledged(self):
        return self.generated - self.acknowledged - self.failed

    def rate(self, now):
        elapsed = now - self.started
        return self.acknowledged / elapsed if elapsed > 0 else 0.0


class Delivery:
    """Keeps every generated event until Kafka acknowledges it: retriable failures are sent again.

    The producer's callbacks run on its I/O thread; they only append to a deque and bump counters
    that the publishing thread reads.
    """

    def __init__(self, stats, clock, *, replaceable=False):
        self.stats = stats
        self.clock = clock
        self.replaceable = replaceable
        self.to_resend = deque()

    def send(self, producer, topic, event):
        try:
            future = producer.send(topic, key=event.key, value=event.to_bytes())
        except KafkaTimeoutError:  # no metadata or no buffer space within max_block_ms: the broker is away
            self.to_resend.append(event)
            return
        except KafkaError as exc:  # refused before sending (too large for max_request_size, ...)
            self.failed(event, producer, exc)
            return
        future.add_callback(self.acknowledged).add_errback(self.failed, event, producer)

    def acknowledged(self, _metadata):
        self.stats.acknowledged += 1
        self.stats.last_acknowledged_at = self.clock()

    def failed(self, event, producer, exc):  # kafka-python's errback: the bound arguments, then the error
        # IllegalStateError is the producer's own state (closed, or closing: "RecordAccumulator is closed",
        # "Producer is closed forcefully"), not Kafka refusing the event: it goes out again on the producer
        # that replaces this one, when there is a way to make one.
        if getattr(exc, "retriable", False) or (self.replaceable and isinstance(exc, IllegalStateError)):
            self.to_resend.append(event)
            return
        self.stats.failed += 1
        if len(self.stats.errors) < 5:
            self.stats.errors.append(f"{type(exc).__name__}: {exc}")
        if self.stats.refusal is None and refuses_client(producer, exc):
            self.stats.refusal = exc

    def resend(self, producer, topic, limit):
        for _ in range(min(limit, len(self.to_resend))):
            self.stats.resent += 1
            self.send(producer, topic, self.to_resend.popleft())


def publish_activity(*, producer, topic, events, rate, count=None, should_stop=lambda: False,
                     on_progress=None, progress_every=1.0, on_silence=None, on_recovery=None,
                     silence_after=STALL_SECONDS, replace_producer=None, clock=time.monotonic, sleep=time.sleep):
    """Send `events` to `topic` at `rate` per second until `count` are acknowledged or `should_stop()`.

    With a count, the run lasts at least count / rate seconds: the last event's slot ends before
    returning. An event whose delivery fails with a retriable error (the broker went away) is sent
    again, so a broker outage delays events but loses none. `on_silence(stats, seconds)` is called
    once when events wait unacknowledged for `silence_after` seconds, `on_recovery(stats)` once
    acknowledgements resume. `replace_producer(old)` returns a new producer when the old one can no
    longer send (closed, or its I/O thread died); the returned stats say which producer ended.
    """
    start = clock()
    schedule = RateSchedule(rate, start=start)
    stats = PublishStats(started=start, last_acknowledged_at=start)
    metrics.watch_publishing(stats)
    delivery = Delivery(stats, clock, replaceable=replace_producer is not None)
    next_progress = start + progress_every
    silent = False

    def watch(now):
        nonlocal next_progress, silent
        waiting = stats.unacknowledged > 0 and now - stats.last_acknowledged_at >= silence_after
        if waiting and not silent:
            silent = True
            if on_silence:
                on_silence(stats, now - stats.last_acknowledged_at)
        elif silent and not waiting:
            silent = False
            if on_recovery:
                on_recovery(stats)
        if on_progress and now >= next_progress:
            on_progress(stats, now)
            next_progress = now + progress_every

    def usable(current):
        if replace_producer is None or not producer_broken(current):
            return current
        return replace_producer(current)

    while not should_stop() and stats.refusal is None and (count is None or stats.generated < count):
        liveness.beat()
        now = clock()
        producer = usable(producer)
        delivery.resend(producer, topic, MAX_BURST)
        due = schedule.due_by(now) if count is None else min(schedule.due_by(now), count)
        for _ in range(min(due - stats.generated, MAX_BURST)):
            delivery.send(producer, topic, next(events))
            stats.generated += 1
        watch(now)
        if due <= stats.generated:
            sleep(min(max(schedule.time_of(stats.generated) - clock(), 0), MAX_SLEEP_SECONDS))

    if count is not None:
        while not should_stop() and stats.refusal is None and clock() < schedule.time_of(count):
            sleep(min(schedule.time_of(count) - clock(), MAX_SLEEP_SECONDS))
    # Until every event is acknowledged or refused for good (or a stop is asked for): resend what
    # failed while the broker was away, and keep saying how many still wait.
    while True:
        liveness.beat()
        producer = usable(producer)
        delivery.resend(producer, topic, len(delivery.to_resend))
        try:
            producer.flush(timeout=MAX_SLEEP_SECONDS * 5)
        except KafkaTimeoutError:
            pass  # still waiting for the broker: say so, and look at the stop flag again
        watch(clock())
        if stats.unacknowledged == 0 or should_stop() or stats.refusal is not None:
            break
        if not delivery.to_resend:
            sleep(MAX_SLEEP_SECONDS)
    stats.finished = clock()
    stats.producer = producer
    return stats


def discard(producer):
    """Close a producer that `producer_broken()` reports, without waiting for it.

    kafka-python 3.0.12's `close(timeout=0)` flushes first and raises KafkaTimeoutError while records
    are pending, which they are when its I/O thread stopped with batches in hand; such a producer can
    send nothing more anyway, and its events are sent again on the one that replaces it.
    """
    try:
        producer.close(timeout=0)
    except KafkaTimeoutError:
        pass
