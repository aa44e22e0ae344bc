"""The generator keeps its data coherent, and the producer keeps its schedule."""

import itertools
from collections import defaultdict
from datetime import datetime, timezone

import pytest

from logs.events import ActivityEvent
from logs.pipeline.generator import OPENING_BALANCE_CENTS, generate_activity
from logs.pipeline.producing import RateSchedule, publish_activity
from tests.support.fakes import AcknowledgedAtOnce, FakeClock

EVENTS = 5000


def sample(seed=7, users=20, count=EVENTS):
    return list(itertools.islice(generate_activity(users=users, seed=seed), count))


def test_every_generated_event_passes_the_schema():
    for event in sample():
        assert ActivityEvent.from_bytes(event.to_bytes()) == event


def test_every_send_is_followed_by_the_matching_receive():
    events = sample()
    sends = [index for index, event in enumerate(events) if event.action == "send"]
    assert len(sends) > EVENTS // 5
    for index in sends:
        if index + 1 == len(events):
            continue  # the sample was cut between the pair
        send, receive = events[index], events[index + 1]
        assert receive.action == "receive"
        assert receive.transfer_id == send.transfer_id
        assert (receive.user_id, receive.counterparty_id) == (send.counterparty_id, send.user_id)
        assert (receive.amount_cents, receive.currency) == (send.amount_cents, send.currency)
        assert receive.timestamp >= send.timestamp
    receives = [event for event in events if event.action == "receive"]
    assert {event.transfer_id for event in receives} <= {events[index].transfer_id for index in sends}


def test_nobody_sends_more_than_their_tracked_balance_and_inquiries_report_it():
    """Replays the sample from the inquiries themselves: each inquiry's balance, minus what the
    user sent and plus what they received afterwards, must stay non-negative and match the next inquiry."""
    events = sample(users=5)  # few users: many inquiries per user, many near-empty balances
    known = {}
    checked = 0
    for event in events:
        if event.action == "balance_inquiry":
            if event.user_id in known:
                assert event.balance_cents == known[event.user_id]
                checked += 1
            known[event.user_id] = event.balance_cents
        elif event.user_id in known:
            delta = -event.amount_cents if event.action == "send" else event.amount_cents
            known[event.user_id] += delta
            assert known[event.user_id] >= 0, f"{event.user_id} overdrew with {event}"
    assert checked > 100


def test_opening_balances_are_never_overdrawn_even_before_the_first_inquiry():
    spent = defaultdict(int)
    for event in sample(users=3):
        if event.action == "send":
            spent[event.user_id] += event.amount_cents
        elif event.action == "receive":
            spent[event.user_id] -= event.amount_cents
        assert spent[event.user_id] <= OPENING_BALANCE_CENTS[1]


def test_the_same_seed_gives_the_same_sequence():
    first, second = sample(seed=42, count=500), sample(seed=42, count=500)
    strip = lambda events: [(e.event_id, e.user_id, e.action, e.amount_cents, e.transfer_id) for e in events]  # noqa: E731
    assert strip(first) == strip(second)
    assert strip(first) != strip(sample(seed=43, count=500))


def test_event_ids_are_unique():
    events = sample()
    assert len({event.event_id for event in events}) == len(events)


def test_users_come_from_the_pool_and_a_lone_user_only_inquires():
    assert {event.user_id for event in sample(users=3)} <= {"user-1", "user-2", "user-3"}
    assert {event.action for event in sample(users=1, count=50)} == {"balance_inquiry"}


def test_timestamps_come_from_the_clock():
    moment = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=timezone.utc)
    events = itertools.islice(generate_activity(users=2, seed=1, clock=lambda: moment), 10)
    assert {event.timestamp for event in events} == {moment}


class RecordingProducer(AcknowledgedAtOnce):
    """Stands in for KafkaProducer in pacing tests only: records when each send happened."""

    def __init__(self, clock):
        self.clock = clock
        self.sent_at = []

    def send(self, topic, key, value):
        self.sent_at.append(self.clock.now)
        self.clock.now += self.clock.send_cost
        return self


@pytest.mark.parametrize("rate, count", [(5, 50), (0.5, 4), (2000, 20000)])
def test_the_schedule_sends_at_the_rate_without_drift(rate, count):
    clock = FakeClock(send_cost=0.00002, oversleep=0.003)  # every sleep wakes 3 ms late
    producer = RecordingProducer(clock)
    stats = publish_activity(producer=producer, topic="t", events=generate_activity(users=10, seed=1),
                             rate=rate, count=count, clock=clock, sleep=clock.sleep)
    assert stats.acknowledged == stats.generated == count and producer.flushed
    start = producer.sent_at[0]
    for index, sent_at in enumerate(producer.sent_at):
        # Never early; late by at most one oversleep plus the sends queued behind it.
        assert start + index / rate <= sent_at + 1e-9
        assert sent_at - (start + index / rate) < 0.003 + 0.2
    # The run lasts count / rate: late wake-ups do not accumulate.
    assert clock.now - start == pytest.approx(count / rate, abs=0.01)


def test_the_schedule_counts_due_events_from_a_fixed_start():
    schedule = RateSchedule(4, start=10.0)
    assert schedule.due_by(9.9) == 0
    assert schedule.due_by(10.0) == 1
    assert schedule.due_by(10.74) == 3
    assert schedule.time_of(8) == 12.0


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan"), 1e7])
def test_the_schedule_refuses_rates_that_are_not_positive_and_finite(rate):
    with pytest.raises(ValueError):
        RateSchedule(rate, start=0)


def test_a_stop_request_ends_publishing_early():
    clock = FakeClock()
    producer = RecordingProducer(clock)
    stats = publish_activity(producer=producer, topic="t", events=generate_activity(users=10, seed=1), rate=10,
                             should_stop=lambda: len(producer.sent_at) >= 7, clock=clock, sleep=clock.sleep)
    assert stats.acknowledged == 7 and producer.flushed
