"""Prometheus metrics of the consumer, served by `start_metrics_server` on METRICS_PORT.

The consume loop reports through `record_batch` and `record_lag` only, so what is measured is
decided here and the loop stays free of metric objects. The default registry is used so the
process and platform collectors (CPU, memory, open files) come along.
"""

from prometheus_client import Counter, Gauge, Histogram, start_http_server

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

_lag_partitions = set()


def start_metrics_server(*, port):
    """Serve /metrics over HTTP on `port` in a daemon thread; 0 or None leaves metrics off."""
    if not port:
        return None
    return start_http_server(port)


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
