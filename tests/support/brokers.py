"""Which brokers a run puts under test, and the session's brokers started in the background.

The rule itself (which test runs on which broker) is in tests/conftest.py; this module has what it uses.
"""

import os
import threading

import pytest

from stack import processes


def brokers_under_test():
    """TEST_BROKERS (`tansu`, `kafka`, or both, comma-separated), both by default."""
    chosen = [name.strip() for name in os.environ.get("TEST_BROKERS", ",".join(processes.BROKERS)).split(",")
              if name.strip()]
    unknown = set(chosen) - set(processes.BROKERS)
    if unknown or not chosen:
        raise pytest.UsageError(f"TEST_BROKERS={os.environ['TEST_BROKERS']!r}: name one or more of "
                                f"{', '.join(processes.BROKERS)}")
    return chosen


def one_leg(preferred, under_test):
    """The broker a test whose broker does not matter runs on: `preferred`, unless it is not under test."""
    return preferred if preferred in under_test else under_test[0]


class StartedInBackground:
    """A server started on a thread of its own, so that the session goes on while it starts (a JVM's start);
    `ready()` waits for it.

    The thread lives until `stop()`: the server's parent-death signal (stack.processes.die_with_parent) is
    tied to the thread that started it, not to the process, and would kill it when that thread ended.
    """

    def __init__(self, server):
        self.server = server
        self.failure = None
        self._started = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"start {server.name}", daemon=True)
        self._thread.start()

    def _run(self):
        try:
            self.server.start()
        except Exception as exc:  # raised to the test that needs this server, by ready()
            self.failure = exc
        finally:
            self._started.set()
        self._stopped.wait()

    def ready(self):
        """The server once it serves; what its start raised, if it failed."""
        self._started.wait()
        if self.failure is not None:
            raise RuntimeError(f"{self.server.name} did not start: {self.failure}") from self.failure
        return self.server

    def stop(self):
        self._started.wait()
        self.server.stop()
        self._stopped.set()
        self._thread.join()
