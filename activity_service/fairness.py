"""One client address cannot take more than its share of a worker (docs/contract.md "API").

Each API worker process counts, per client address, the requests it is handling (waiting for a Django
thread or running in one) and the rate at which they arrive. Over `max_in_flight` the client's next
request is a 503, over its rate a 429, both with Retry-After, while every other address is served as
before. These are the caps no stock Python server offers (docs/decisions/0017-edge-on-stock-parts.md);
idle connections are not counted here: they cost a socket on the event loop, never a thread.

The client address is the server's `scope["client"]`: behind a proxy, uvicorn's own proxy-headers
middleware has already replaced the proxy's address by the one it names in X-Forwarded-For, and only
for proxies in gunicorn's `forwarded_allow_ips` (API_TRUSTED_PROXIES; anyone can write that header).
Django sees the same address as REMOTE_ADDR, so login lockouts and the audit line name it too.
"""

import math
import time
from collections import OrderedDict

from .refusals import refuse


class RateBucket:
    """A token bucket: `burst` requests at once, refilled at `rate` per second."""

    __slots__ = ("tokens", "updated")

    def __init__(self, burst, now):
        self.tokens, self.updated = float(burst), now

    def take(self, *, rate, burst, now):
        """0 when a request may go now, else the seconds until one may."""
        self.tokens = min(burst, self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0
        return (1 - self.tokens) / rate


class ClientShare:
    """ASGI middleware: per client address, at most `max_in_flight` requests at once and `rate` per second
    (`burst` at once) in this process."""

    # Buckets of clients gone quiet are dropped beyond this many addresses, so a scan from many
    # addresses cannot grow the worker's memory without bound.
    remembered_clients = 100_000

    def __init__(self, application, *, max_in_flight, rate, burst):
        self.application = application
        self.max_in_flight, self.rate, self.burst = max_in_flight, rate, burst
        self.in_flight = {}
        self.buckets = OrderedDict()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.application(scope, receive, send)
            return
        client = (scope.get("client") or ("", 0))[0]
        wait = self.rate_wait(client)
        if wait:
            await refuse(send, 429, "Too many requests from this address; slow down.", retry_after=math.ceil(wait))
            return
        if self.in_flight.get(client, 0) >= self.max_in_flight:
            await refuse(send, 503, "Too many requests from this address at once; try again shortly.", retry_after=1)
            return
        self.in_flight[client] = self.in_flight.get(client, 0) + 1
        try:
            await self.application(scope, receive, send)
        finally:
            left = self.in_flight.pop(client) - 1
            if left:
                self.in_flight[client] = left

    def rate_wait(self, client):
        now = time.monotonic()
        bucket = self.buckets.get(client)
        if bucket is None:
            bucket = self.buckets[client] = RateBucket(self.burst, now)
            if len(self.buckets) > self.remembered_clients:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(client)
        return bucket.take(rate=self.rate, burst=self.burst, now=now)
