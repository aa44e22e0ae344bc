"""logs.api.throttling.AccountRateThrottle: the account throttle in constant time, as a specification."""

from types import SimpleNamespace

import pytest

from logs.api.local_cache import LocalCache, local_counts
from logs.api.throttling import AccountRateThrottle


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def throttle(rate, clock):
    instance = type("Throttle", (AccountRateThrottle,), {"rate": rate, "timer": clock})()
    return instance


def request(account_id):
    return SimpleNamespace(user=SimpleNamespace(is_authenticated=True, pk=account_id))


def allowed(rate, clock, account_id=1):
    """(allowed, Retry-After) of one request by the account at the clock's time (a new throttle per request,
    as DRF makes one per request)."""
    instance = throttle(rate, clock)
    return instance.allow_request(request(account_id), None), instance.wait()


@pytest.fixture(autouse=True)
def empty():
    local_counts.clear()


def test_an_account_gets_its_rate_then_429_with_retry_after_and_others_are_not_counted():
    clock = Clock(6000.0)  # the start of a minute window
    assert [allowed("3/minute", clock)[0] for _ in range(3)] == [True] * 3
    refused, wait = allowed("3/minute", clock)
    assert not refused and wait == 60
    assert allowed("3/minute", clock, account_id=2)[0]


def test_the_window_slides_the_previous_windows_requests_count_for_the_part_still_inside_it():
    clock = Clock(6000.0)
    for _ in range(4):
        assert allowed("4/minute", clock)[0]
    clock.now = 6060.0 + 15  # a quarter into the next window: 3 of the 4 still count
    assert allowed("4/minute", clock)[0]  # 3 + 1 = 4: one more fits
    refused, wait = allowed("4/minute", clock)
    assert not refused and 1 <= wait <= 60
    clock.now += wait  # Retry-After is honest: by then one more fits
    assert allowed("4/minute", clock)[0]


def test_after_two_quiet_windows_the_account_starts_afresh():
    clock = Clock(6000.0)
    for _ in range(2):
        allowed("2/second", clock)
    assert not allowed("2/second", clock)[0]
    clock.now += 2
    assert [allowed("2/second", clock)[0] for _ in range(2)] == [True, True]


def test_the_state_is_two_counters_whatever_the_rate():
    clock = Clock(6000.0)
    for _ in range(500):
        allowed("1000/minute", clock)
    instance = throttle("1000/minute", clock)
    key = instance.get_cache_key(request(1), None)
    assert local_counts.entries.keys() == {f"{key}:100"} and local_counts.get(f"{key}:100") == 500


# --- where the counts live ------------------------------------------------------------------------------

def test_the_local_cache_answers_the_apis_calls_as_djangos_in_memory_cache_does():
    """The same calls against `LocalCache` and Django's `LocMemCache` give the same answers, errors included."""
    from django.core.cache.backends.locmem import LocMemCache

    def script(store):
        answers = [store.get("a"), store.get("a", 0), store.add("a", 1, 60), store.add("a", 5, 60), store.get("a")]
        answers += [store.incr("a"), store.incr("a"), store.get_many(["a", "b"])]
        try:
            store.incr("b")
        except ValueError:
            answers.append("no b")
        store.set("b", 7, 60)
        answers += [store.get_many(["a", "b", "c"]), store.add("c", 1, 0), store.get("c", "expired")]
        store.set("a", 3, 0)
        answers += [store.get("a", "expired"), store.add("a", 4, 60), store.get("a")]
        try:
            store.set("d", 1, 0)
            store.incr("d")
        except ValueError:
            answers.append("no d")
        store.set("e", "token", 60)
        store.delete("e")
        store.delete("never-set")
        answers.append(store.get("e", "deleted"))
        store.clear()
        answers.append(store.get_many(["a", "b"]))
        return answers

    assert script(LocalCache()) == script(LocMemCache(f"test-{id(script)}", {}))


def test_the_local_cache_keeps_at_most_its_limit_dropping_the_longest_since_set():
    counts = LocalCache(limit=3)
    for key in ("a", "b", "c"):
        counts.set(key, 1, 60)
    counts.set("a", 2, 60)  # set again: now the newest
    counts.add("d", 1, 60)
    assert list(counts.entries) == ["c", "a", "d"] and counts.get("b") is None
    assert counts.incr("c") == 2 and list(counts.entries) == ["c", "a", "d"]  # a count going up keeps its place


def test_the_counts_live_in_the_process_unless_djangos_default_cache_is_a_shared_one(settings):
    from django.core.cache import cache

    from logs.api.local_cache import count_store

    assert count_store() is local_counts
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1"}}
    assert count_store() is cache
