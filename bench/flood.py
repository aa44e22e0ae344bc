"""One hostile client: many idle connections from one loopback address, each reopened as the server closes it.

    python -m bench.flood http://127.0.0.1:8000 --source 127.0.0.2 --connections 2100 --seconds 45

The flood sends nothing on its connections (the cheapest attack: a socket and no bytes), so a server
holds each until its header deadline and closes it; the flood then opens another. Meanwhile
`FairnessProbe` asks /healthz (or a probe port) and a query from another address, as a well-behaved
client and kubelet would, and counts the answers that came back 200 within a deadline. Used by
bench/load (the flood row) and by tests/test_fairness.py; every loop is bounded in count and time.
"""

import argparse
import http.client
import selectors
import socket
import threading
import time
from urllib.parse import urlsplit


class InBackground:
    """`run` on a thread of its own for the length of a `with` block; `run` returns once `stopping` is set."""

    def __init__(self, name):
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(timeout=30)

    def run(self):
        raise NotImplementedError


class Flood(InBackground):
    """`connections` idle TCP connections to `host:port` from `source`, kept open by reopening each closed one."""

    def __init__(self, host, port, *, source, connections):
        super().__init__("flood")
        self.address, self.source, self.connections = (host, port), source, connections
        self.opened = self.refused = 0

    def open_one(self, selector):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.bind((self.source, 0))
            sock.connect_ex(self.address)
            selector.register(sock, selectors.EVENT_READ)
            self.opened += 1
        except OSError:
            self.refused += 1
            sock.close()

    def run(self):
        selector = selectors.DefaultSelector()
        try:
            while not self.stopping.is_set():
                missing = self.connections - len(selector.get_map())
                for _ in range(min(missing, 200)):  # in bursts, so the loop also reads and closes
                    self.open_one(selector)
                for key, _ in selector.select(timeout=0.05):
                    sock = key.fileobj
                    try:
                        if sock.recv(65536):
                            continue  # an answer (408, 503, ...) before the close
                    except OSError:
                        pass
                    selector.unregister(sock)
                    sock.close()
        finally:
            for key in list(selector.get_map().values()):
                key.fileobj.close()
            selector.close()


class FairnessProbe(InBackground):
    """GETs of `paths` in turn from `source`, each on a new connection (as kubelet probes), every `interval`."""

    def __init__(self, base_url, paths, *, source="127.0.0.1", headers=None, deadline=2.0, interval=0.25):
        super().__init__("fairness-probe")
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.paths, self.source, self.headers = paths, source, {"Host": "localhost", **(headers or {})}
        self.deadline, self.interval = deadline, interval
        self.answers = []  # (path, status or None, seconds)

    def ask(self, path):
        started = time.monotonic()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.deadline,
                                                source_address=(self.source, 0))
        try:
            connection.request("GET", path, headers=self.headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            status = None
        finally:
            connection.close()
        return status, time.monotonic() - started

    def run(self):
        turn = 0
        while not self.stopping.wait(self.interval):
            path = self.paths[turn % len(self.paths)]
            turn += 1
            self.answers.append((path, *self.ask(path)))

    def served(self, path=None):
        """(answered 200 within the deadline, asked) for `path`, or for every path."""
        asked = [answer for answer in self.answers if path is None or answer[0] == path]
        good = [answer for answer in asked if answer[1] == 200 and answer[2] <= self.deadline]
        return len(good), len(asked)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--source", default="127.0.0.2")
    parser.add_argument("--connections", type=int, default=2100)
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--probe", action="append", default=None, help="path probed from 127.0.0.1 (repeatable)")
    arguments = parser.parse_args()
    parts = urlsplit(arguments.url)
    with Flood(parts.hostname, parts.port, source=arguments.source, connections=arguments.connections) as flood, \
            FairnessProbe(arguments.url, arguments.probe or ["/healthz"]) as probe:
        time.sleep(min(arguments.seconds, 600))
    good, asked = probe.served()
    print(f"flood: {flood.opened} connections opened ({flood.refused} refused); "
          f"probes: {good} of {asked} answered 200 within {probe.deadline:.0f} s")


if __name__ == "__main__":
    main()
