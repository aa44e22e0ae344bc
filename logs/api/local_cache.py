"""What an API process keeps in its own memory for a few seconds or minutes: `LocalCache`.

- The checked tokens (`authentication.checked_tokens`): the contract makes that trust per process.
- The account throttle's and the bad-token lockout's counts (`local_counts`), unless Django's default
  cache is shared between processes (Redis, memcached): `count_store()` then gives that cache, and the
  counts are global (docs/contract.md "Access control").

Django's own in-process cache (`LocMemCache`) would keep them too, but on every call it checks the key
for memcached, pickles or unpickles the value (a token with its user: two model instances) and goes
through Django's per-thread cache handles: a sizeable part of what an API request cost.
"""

import threading
import time

from django.conf import settings
from django.core.cache import cache

IN_PROCESS_CACHES = frozenset({"django.core.cache.backends.locmem.LocMemCache"})
_ABSENT = object()


class LocalCache:
    """Values under keys, each living `timeout` seconds from when it was set or added, in this process: the part
    of Django's cache API the API uses (`get`, `get_many`, `add`, `incr`, `set`, `delete`, `clear`), with its
    answers. At most `limit` keys; beyond that the longest since set goes. The values are kept as they
    are, not copied: what is kept must not be changed afterwards."""

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

    def delete(self, key):
        with self.lock:
            self.entries.pop(key, None)

    def clear(self):
        with self.lock:
            self.entries.clear()

    def _store(self, key, value, expires):
        # Newest last, so the first entry is the longest since set. Past the limit it goes, live or not: a scan
        # for the expired ones would cost every request its length once the limit is reached (a flood of
        # unknown tokens from many addresses reaches it).
        self.entries.pop(key, None)
        self.entries[key] = (value, expires)
        while len(self.entries) > self.limit:
            del self.entries[next(iter(self.entries))]


local_counts = LocalCache()


def count_store():
    """Django's default cache when it is shared between processes, else this process's `local_counts`."""
    return local_counts if settings.CACHES["default"]["BACKEND"] in IN_PROCESS_CACHES else cache
