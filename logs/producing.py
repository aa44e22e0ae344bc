"""Publishing generated activity to Kafka at a steady rate."""

import math
import time
from dataclasses import dataclass, field

from . import liveness

MAX_SLEEP_SECONDS = 0.2  # sleep in short steps so a stop request is honoured promptly
MAX_BURST = 1000  # events sent between two looks at the clock and the stop flag


class RateSchedule:
    """When each event is due: the n-th (from 0) at start + n / rate.

    Send times are fixed against the clock rather than by sleeping an interval after each send,
    so a late wake-up is caught up on the next turn instead of accumulating into drift.
    """

    def __init__(self, rate, *, start):
        if not rate > 0 or math.isinf(rate):
            raise ValueError("rate must be a positive, finite number of events per second")
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
    started: float
    finished: float | None = None
    sent: int = 0
    failed: int = 0
    errors: list = field(default_factory=list)

    def rate(self, now):
        elapsed = now - self.started
        return self.sent / elapsed if elapsed > 0 else 0.0


def publish_activity(*, producer, topic, events, rate, count=None, should_stop=lambda: False,
                     on_progress=None, progress_every=1.0, clock=time.monotonic, sleep=time.sleep):
    """Send `events` to `topic` at `rate` per second until `count` are sent or `should_stop()`.

    With a count, the run lasts count / rate seconds: the last event's slot ends before returning.
    Every event is handed to the producer; delivery failures are counted in the returned stats
    once `producer.flush()` has waited for all acknowledgements.
    """
    start = clock()
    schedule = RateSchedule(rate, start=start)
    stats = PublishStats(started=start)
    next_progress = start + progress_every

    def failed(exc):
        stats.failed += 1
        if len(stats.errors) < 5:
            stats.errors.append(f"{type(exc).__name__}: {exc}")

    while not should_stop() and (count is None or stats.sent < count):
        liveness.beat()
        now = clock()
        due = schedule.due_by(now) if count is None else min(schedule.due_by(now), count)
        for _ in range(min(due - stats.sent, MAX_BURST)):
            event = next(events)
            producer.send(topic, key=event.key, value=event.to_bytes()).add_errback(failed)
            stats.sent += 1
        if on_progress and now >= next_progress:
            on_progress(stats, now)
            next_progress = now + progress_every
        if due <= stats.sent:
            sleep(min(max(schedule.time_of(stats.sent) - clock(), 0), MAX_SLEEP_SECONDS))

    if count is not None:
        while not should_stop() and clock() < schedule.time_of(count):
            sleep(min(schedule.time_of(count) - clock(), MAX_SLEEP_SECONDS))
    producer.flush()
    stats.finished = clock()
    return stats
