"""Prometheus metrics of the consumer (METRICS_PORT) and the producer (PRODUCER_METRICS_PORT), served by
`start_metrics_server`.

The loops report through the functions at the bottom (`record_batch`, `record_lag`, `record_undecodable`,
`record_assignment`, `watch_publishing`), so what is measured is decided here and the loops stay free of
metric objects. The default registry is used so the process and platform collectors (CPU, memory, open
files) come along; each process registers only its own role's metrics when it starts serving, so the
producer does not export a consumer's counters at zero. The same port answers the loop's liveness and
readiness (liveness.py) for Kubernetes probes and docker-compose, and exports them as `activity_ready`
and `activity_live` for the alert rules (deploy/prometheus/alerts.yml).

Label sets are bounded: `partition` by the topic's partitions, `role` by the two commands, `reason` by
`reasons.REASON_CLASSES` (a reason's text quotes the record, so it stays on the dead-letter record).
"""

import json
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer

from .liveness import loop_health
from .reasons import REASON_CLASSES, reason_class

CONSUMER, PRODUCER = "consumer", "producer"

EVENTS_RECEIVED = Counter("activity_events_received", "Messages read from the events topic.", registry=None)
EVENTS_STORED = Counter("activity_events_stored", "Valid events newly written to MongoDB.", registry=None)
EVENTS_DUPLICATE = Counter(
    "activity_events_duplicate", "Valid events skipped because their eventId was already stored (replays).",
    registry=None,
)
EVENTS_DEAD_LETTERED = Counter(
    "activity_events_dead_lettered",
    "Messages sent to the dead-letter topic, by the class of their reason (the reason itself is on the record).",
    ["reason"], registry=None,
)
BATCH_WRITE_SECONDS = Histogram(
    "activity_batch_write_seconds",
    "Time to bulk-write one batch to MongoDB.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=None,
)
CONSUMER_LAG = Gauge(
    "activity_consumer_lag",
    "Messages on the partition not yet consumed by this process (log end offset - position).",
    ["partition"], registry=None,
)
UNDECODABLE_OFFSET = Gauge(
    "activity_consumer_undecodable_offset",
    "Offset of a record kafka-python cannot decode, on a partition this consumer has paused because of it.",
    ["partition"], registry=None,
)
CONSUMER_METRICS = (EVENTS_RECEIVED, EVENTS_STORED, EVENTS_DUPLICATE, EVENTS_DEAD_LETTERED, BATCH_WRITE_SECONDS,
                    CONSUMER_LAG, UNDECODABLE_OFFSET)

# Every class exists from the start at zero: a series that appears with its first dead letter would hide
# that dead letter from rate() and increase(), which need two samples.
for _reason in REASON_CLASSES:
    EVENTS_DEAD_LETTERED.labels(reason=_reason)


class LoopCollector:
    """`activity_ready` and `activity_live` of this process's loop, read at scrape time from the same
    `LoopHealth` that answers /readyz and /healthz, so the alert rules see what the probes see."""

    def __init__(self, *, health, role, liveness_timeout):
        self.health, self.role, self.liveness_timeout = health, role, liveness_timeout

    def collect(self):
        ready = GaugeMetricFamily("activity_ready", "1 once the loop has started its work (/readyz answers 200).",
                                  labels=["role"])
        ready.add_metric([self.role], 1.0 if self.health.ready else 0.0)
        live = GaugeMetricFamily("activity_live", "0 once the loop has not turned for LIVENESS_TIMEOUT_SECONDS "
                                 "(/healthz answers 503).", labels=["role"])
        live.add_metric([self.role], 0.0 if self.health.stalled_for(timeout=self.liveness_timeout) else 1.0)
        yield ready
        yield live


class PublishingCollector:
    """The producer's counts, read at scrape time from the running `publish_activity`'s PublishStats."""

    def __init__(self):
        self.stats = None

    def collect(self):
        stats = self.stats
        if stats is None:
            return
        for name, count, help_text in (
            ("generated", stats.generated, "Events taken from the generator and handed to the Kafka producer."),
            ("acknowledged", stats.acknowledged, "Events the broker has acknowledged."),
            ("failed", stats.failed, "Events Kafka refused for good (no retry can cure it)."),
            ("resent", stats.resent, "Events handed over again after a retriable failure (the broker was away)."),
        ):
            yield CounterMetricFamily(f"activity_producer_events_{name}", help_text, value=count)
        yield GaugeMetricFamily("activity_producer_unacknowledged",
                                "Events handed to the producer and neither acknowledged nor refused yet.",
                                value=stats.unacknowledged)


_publishing = PublishingCollector()
_registered = set()


def register_role(role, *, health=loop_health, liveness_timeout):
    """Export `role`'s metrics (CONSUMER or PRODUCER) and its loop's health; once per process."""
    if role in _registered:
        return
    metrics = CONSUMER_METRICS if role == CONSUMER else (_publishing,)
    for collector in (*metrics, LoopCollector(health=health, role=role, liveness_timeout=liveness_timeout)):
        REGISTRY.register(collector)
    _registered.add(role)

_lag_partitions = set()
_undecodable_partitions = set()


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


def start_metrics_server(*, port, liveness_timeout, role):
    """Serve `role`'s /metrics, /healthz and /readyz over HTTP on `port` in a daemon thread; 0 or None leaves
    it off."""
    if not port:
        return None
    register_role(role, liveness_timeout=liveness_timeout)
    app = probes_and_metrics(health=loop_health, liveness_timeout=liveness_timeout)
    server = make_server("0.0.0.0", port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True).start()
    return server


def record_batch(*, received, stored, duplicates, dead_letter_reasons, write_seconds):
    """Count one processed batch; `dead_letter_reasons` are the reasons of its dead letters, `write_seconds`
    is None when the batch needed no database write."""
    EVENTS_RECEIVED.inc(received)
    EVENTS_STORED.inc(stored)
    EVENTS_DUPLICATE.inc(duplicates)
    for reason in dead_letter_reasons:
        EVENTS_DEAD_LETTERED.labels(reason=reason_class(reason)).inc()
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
    _undecodable_partitions.add(partition)


def record_assignment(*, partitions):
    """This process holds `partitions` now: the undecodable offset of one it lost in a rebalance is no longer
    its to report (its pause went with it; the partition's next holder meets the batch in its turn)."""
    for partition in _undecodable_partitions - set(partitions):
        UNDECODABLE_OFFSET.remove(str(partition))
        _undecodable_partitions.discard(partition)


def watch_publishing(stats):
    """Export the counts of the publishing run that keeps `stats` (a producing.PublishStats) from now on."""
    _publishing.stats = stats
