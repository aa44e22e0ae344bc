"""Waiting on a condition with a deadline: how a test waits for anything (never a fixed sleep)."""

import time


def wait_for(condition, *, timeout, interval=0.1, message="condition"):
    """Poll `condition` until it returns a truthy value (returned) or `timeout` seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
