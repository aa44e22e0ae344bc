"""Turning SIGINT/SIGTERM into a stop request that long-running commands poll."""

import signal
import threading


class StopRequested:
    """Set by the first SIGINT or SIGTERM; a second one falls back to the default (immediate) exit."""

    def __init__(self):
        self._event = threading.Event()
        self.signal_name = None

    def __bool__(self):
        return self._event.is_set()

    def __call__(self):
        return self._event.is_set()

    def install(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name
        self._event.set()
        signal.signal(signum, signal.SIG_DFL)
