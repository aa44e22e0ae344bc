"""Prometheus metrics of the consumer (METRICS_PORT) and the producer (PRODUCER_METRICS_PORT), served by
`start_metrics_server`.

The consume loop reports through `record_batch` and `record_lag` only, so what is measured is
decided here and the loop stays free of metric objects. The default registry is used so the
process and platform collectors (CPU, memory, open files) come along. The same port answers the
loop's liveness and readiness (liveness.py) for Kubernetes probes and docker-compose.
"""

import json
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from .liveness import loop_health

EVENTS_RECEIVED = Counter("activity_events_received", "Messages read from the events topic.")
EVENTS_STORED = Counter("activity_events_stored", "Valid events newly written to MongoDB.")
EVENTS_DUPLICATE = Counter(
    "activity_events_duplicate", "Valid events skipped because their eventId was already stored (replays)."
)
EVENTS_DEAD_LETTERED = Counter(
    "activity_events_dead_lettered", "Invalid messages sent to the dead-letter topic with their reason."
)
BATCH_WRITE_SECONDS = Histogram(
    "activity_batch_write_seconds",
    "Time to bulk-write one batch to MongoDB.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
CONSUMER_LAG = Gauge(
    "activity_consumer_lag",
    "Messages on the partition not yet consumed by this process (log end offset - position).",
    ["partition"],
)

UNDECODABLE_OFFSET = Gauge(
    "activity_consumer_undecodable_offset",
    "Offset of a record kafka-python cannot decode, on a partition this consumer has paused because of it.",
    ["partition"],
)

_lag_partitions = set()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        """Probes every few seconds would drown the process's own log."""


def _json(start_response, status, body):
    payload = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]


def probes_and_metrics(*, health, liveness_timeout):
    """WSGI app: /healthz and /readyz of the loop, /metrics for anything else; GET and HEAD only."""
    metrics_app = make_wsgi_app()

    def app(environ, start_response):
        if environ["REQUEST_METHOD"] not in {"GET", "HEAD"}:
            return _json(start_response, "405 Method Not Allowed", {"status": "method not allowed"})
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            stalled = health.stalled_for(timeout=liveness_timeout)
            if stalled is not None:
                return _json(start_response, "503 Service Unavailable",
                             {"status": "stalled", "reason": f"the loop has not turned for {stalled:.1f} s "
                                                             f"(LIVENESS_TIMEOUT_SECONDS={liveness_timeout})"})
            return _json(start_response, "200 OK", {"status": "ok"})
        if path == "/readyz":
            if not health.ready:
                return _json(start_response, "503 Service Unavailable", {"status": "starting"})
            return _json(start_response, "200 OK", {"status": "ok"})
        return metrics_app(environ, start_response)

    return app


def start_metrics_server(*, port, liveness_timeout):
    """Serve /metrics, /healthz and /readyz over HTTP on `port` in a daemon thread; 0 or None leaves it off."""
    if not port:
        return None
    app = probes_and_metrics(health=loop_health, liveness_timeout=liveness_timeout)
    server = make_server("0.0.0.0", port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True).start()
    return server


def record_batch(*, received, stored, duplicates, dead_lettered, write_seconds):
    """Count one processed batch; `write_seconds` is None when the batch needed no database write."""
    EVENTS_RECEIVED.inc(received)
    EVENTS_STORED.inc(stored)
    EVENTS_DUPLICATE.inc(duplicates)
    EVENTS_DEAD_LETTERED.inc(dead_lettered)
    if write_seconds is not None:
        BATCH_WRITE_SECONDS.observe(write_seconds)


def record_lag(*, lag_by_partition):
    """Set the lag of the partitions this process holds; partitions it lost in a rebalance are
    dropped, so summing the gauge over all consumers counts each partition once."""
    for partition in _lag_partitions - set(lag_by_partition):
        CONSUMER_LAG.remove(str(partition))
    for partition, lag in lag_by_partition.items():
        CONSUMER_LAG.labels(partition=str(partition)).set(lag)
    _lag_partitions.clear()
    _lag_partitions.update(lag_by_partition)


def record_undecodable(*, partition, offset):
    UNDECODABLE_OFFSET.labels(partition=str(partition)).set(offset)
