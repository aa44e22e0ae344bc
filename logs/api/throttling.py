"""The account throttle: DRF's `UserRateThrottle` (its rate, scope and cache key), counted in constant time.

DRF keeps each account's history as one list of timestamps in the cache, read, trimmed and written whole
on every request: the work grows with the rate (at 1,200 a minute, a busy account's list holds up to 1,200
entries). This counts two fixed windows instead (the current one and the one before, weighted by how much
of it still falls in the sliding window), a few integers whatever the rate, and `incr` is atomic in shared
caches (Redis, memcached) too. The counts live where `local_cache.count_store()` says.
"""

import math

from rest_framework.throttling import UserRateThrottle

from .local_cache import count_store


class AccountRateThrottle(UserRateThrottle):
    """At most `num_requests` per `duration` per account (per address for anonymous requests), estimated
    over a sliding window from two fixed-window counters; Retry-After is when the estimate drops below."""

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.cache = count_store()
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        now = self.timer()
        window, into = divmod(now, self.duration)
        current, previous = f"{self.key}:{int(window)}", f"{self.key}:{int(window) - 1}"
        counts = self.cache.get_many([current, previous])
        carried = counts.get(previous, 0) * (1 - into / self.duration)
        if carried + counts.get(current, 0) >= self.num_requests:
            self.seconds_to_wait = self.seconds_until_allowed(counts.get(previous, 0), counts.get(current, 0), into)
            return False
        if counts.get(current):  # counted a moment ago: one more on it, one cache call
            try:
                self.cache.incr(current)
                return True
            except ValueError:  # expired since
                pass
        # Kept for two windows: the next window reads this one as its previous.
        if not self.cache.add(current, 1, 2 * self.duration):
            try:
                self.cache.incr(current)
            except ValueError:  # expired between add and incr
                self.cache.set(current, 1, 2 * self.duration)
        return True

    def seconds_until_allowed(self, previous, current, into):
        """When the previous window's weight has fallen enough for one more request (at least 1 s); when the
        current window alone is full, the start of the next window."""
        room = self.num_requests - current
        if room <= 0 or previous == 0:
            return max(1, math.ceil(self.duration - into))
        # previous * (1 - t / duration) < room  <=>  t > duration * (1 - room / previous)
        return max(1, math.ceil(self.duration * (1 - room / previous) - into))

    def wait(self):
        return getattr(self, "seconds_to_wait", None)
