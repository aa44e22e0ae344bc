"""Where the account throttle and the bad-token lockout keep their counts (docs/contract.md "Access control").

Both count in Django's default cache when that cache is shared between processes (Redis, memcached):
the counts are then global. With Django's default, in-process memory (`LocMemCache`), each process
counts alone, and `LocalCounts` keeps the counts instead: the same answers for the few calls the two
make, without what the in-memory cache does on every call (check the key for memcached, pickle and
unpickle the value, go through Django's per-thread cache handles), which was a sizeable part of what
an API request cost.
"""

import threading
import time

from django.conf import settings
from django.core.cache import cache

IN_PROCESS_CACHES = frozenset({"django.core.cache.backends.locmem.LocMemCache"})
_ABSENT = object()


class LocalCounts:
    """Integers under keys, each living `timeout` seconds from when it was set or added, in this process: what
    the throttle and the lockout ask of Django's cache (`get`, `get_many`, `add`, `incr`, `set`, `clear`), with
    its answers. At most `limit` keys; beyond that the expired go, then the oldest."""

    def __init__(self, limit=100_000):
        self.limit = limit
        self.entries = {}  # key -> (value, time.monotonic() it expires at)
        self.lock = threading.Lock()

    def get(self, key, default=None):
        entry = self.entries.get(key)
        return entry[0] if entry is not None and entry[1] > time.monotonic() else default

    def get_many(self, keys):
        found = {}
        for key in keys:
            value = self.get(key, _ABSENT)
            if value is not _ABSENT:
                found[key] = value
        return found

    def add(self, key, value, timeout):
        """Sets `key` unless it holds a live value; whether it did."""
        with self.lock:
            if self.get(key, _ABSENT) is not _ABSENT:
                return False
            self._store(key, value, time.monotonic() + timeout)
            return True

    def incr(self, key, delta=1):
        """The live value plus `delta`, kept until the same expiry; ValueError if there is none, as Django's cache."""
        with self.lock:
            entry = self.entries.get(key)
            if entry is None or entry[1] <= time.monotonic():
                raise ValueError(f"Key '{key}' not found")
            self.entries[key] = (entry[0] + delta, entry[1])
            return entry[0] + delta

    def set(self, key, value, timeout):
        with self.lock:
            self._store(key, value, time.monotonic() + timeout)

    def clear(self):
        with self.lock:
            self.entries.clear()

    def _store(self, key, value, expires):
        self.entries.pop(key, None)
        self.entries[key] = (value, expires)
        if len(self.entries) > self.limit:
            now = time.monotonic()
            for stale in [name for name, (_, expiry) in self.entries.items() if expiry <= now]:
                del self.entries[stale]
            while len(self.entries) > self.limit:
                del self.entries[next(iter(self.entries))]


local_counts = LocalCounts()


def count_store():
    """Django's default cache when it is shared between processes, else this process's `local_counts`."""
    return local_counts if settings.CACHES["default"]["BACKEND"] in IN_PROCESS_CACHES else cache
