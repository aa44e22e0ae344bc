"""Is this process's loop still turning, and has it started its work? For Kubernetes probes.

The consumer calls `beat()` after every `consumer.poll` and `mark_ready()` once the group has
assigned it partitions; the producer beats once per turn of its send loop and is ready once it is
connected. `metrics.py` serves the answers as /healthz and /readyz beside /metrics.

Liveness fails once no beat has come for longer than the bound: a loop stuck in a call that never
returns (a socket that stays open while its peer is frozen) is restarted. Before the first beat the
process is still starting, waiting for the broker and the database with retries of its own, and
counts as alive; readiness says whether it got that far.
"""

import time


class LoopHealth:
    def __init__(self, *, clock=time.monotonic):
        self.clock = clock
        self.last_beat = None
        self.ready = False

    def beat(self):
        self.last_beat = self.clock()

    def mark_ready(self):
        self.ready = True

    def stalled_for(self, *, timeout):
        """Seconds since the last beat when that is longer than `timeout`; None while alive."""
        if self.last_beat is None:
            return None
        silent = self.clock() - self.last_beat
        return silent if silent > timeout else None


loop_health = LoopHealth()
beat = loop_health.beat
mark_ready = loop_health.mark_ready
