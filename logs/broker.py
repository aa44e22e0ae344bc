"""Kafka clients configured from settings, and the topics they need.

Everything that knows kafka-python's constructor arguments lives here, so the producer, the
consumer, the dead-letter queue, the tests and the benchmarks all talk to Kafka the same way.
"""

import logging
import re

from django.conf import settings
from django.core.management.base import CommandError
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)

# How long a client keeps trying to reach the first broker before giving up with a clear error.
BOOTSTRAP_TIMEOUT_MS = 10_000


# The codecs Kafka has; kafka-python needs gzip (standard library), python-snappy, lz4 and zstandard.
COMPRESSION_CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
# host[:port] (kafka-python's default port is 9092): a name, an IPv4 address or a bracketed IPv6 address.
_SERVER = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?")


class BrokerUnavailable(RuntimeError):
    """Kafka could not be reached; the message says where we looked and what to do."""


class BrokerMisconfigured(CommandError):
    """KAFKA_BOOTSTRAP_SERVERS cannot name a broker: never worth a retry.

    A CommandError, so that every command shows it as one line and exits non-zero.
    """


def bootstrap_servers():
    """KAFKA_BOOTSTRAP_SERVERS as a list of host:port, or BrokerMisconfigured saying what is wrong."""
    configured = settings.KAFKA_BOOTSTRAP_SERVERS
    servers = [server.strip() for server in configured.split(",")]
    if not any(servers):
        raise BrokerMisconfigured("KAFKA_BOOTSTRAP_SERVERS is empty: set it to host:port[,host:port...], "
                                  "e.g. localhost:9092")
    for server in servers:
        match = _SERVER.fullmatch(server)
        if not match or (match[1] is not None and not 0 < int(match[1]) < 65536):
            raise BrokerMisconfigured(f"KAFKA_BOOTSTRAP_SERVERS={configured!r}: {server!r} is not host:port "
                                      "(e.g. localhost:9092; several separated by commas)")
    return servers


def _unavailable(exc):
    detail = str(exc) if str(exc).startswith(type(exc).__name__) else f"{type(exc).__name__}: {exc}"
    return BrokerUnavailable(
        f"cannot reach Kafka at {settings.KAFKA_BOOTSTRAP_SERVERS} ({detail}). "
        "Start the local stack with `make services`, or point KAFKA_BOOTSTRAP_SERVERS at a running broker."
    )


def ensure_topics(*names, partitions=None):
    """Create missing topics with the configured partition count; existing topics are left as they are."""
    partitions = partitions or settings.KAFKA_TOPIC_PARTITIONS
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers(), client_id="activity-admin",
                                 bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS)
    except KafkaError as exc:
        raise _unavailable(exc) from exc
    try:
        existing = set(admin.list_topics())
        missing = [name for name in names if name not in existing]
        if missing:
            topics = [NewTopic(name, partitions, settings.KAFKA_TOPIC_REPLICATION_FACTOR) for name in missing]
            try:
                admin.create_topics(topics)
                log.info("created topics %s with %d partitions", ", ".join(missing), partitions)
            except TopicAlreadyExistsError:
                pass  # another process created it between our look and our create
    finally:
        admin.close()


def create_producer(**overrides):
    """A producer that waits for all in-sync replicas: an acknowledged event is not lost.

    Retries can duplicate a message on the topic; that is safe because the consumer stores each
    eventId once.
    """
    config = {
        "bootstrap_servers": bootstrap_servers(),
        "acks": "all",
        "linger_ms": 5,
        "retries": 5,
        "client_id": "activity-producer",
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
    }
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except KafkaError as exc:
        raise _unavailable(exc) from exc


def create_consumer(**overrides):
    """A group member that commits nothing by itself: offsets are committed after storage."""
    config = {
        "bootstrap_servers": bootstrap_servers(),
        "group_id": settings.KAFKA_CONSUMER_GROUP,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.KAFKA_SESSION_TIMEOUT_MS,
        "max_poll_interval_ms": settings.KAFKA_MAX_POLL_INTERVAL_MS,
        "heartbeat_interval_ms": max(settings.KAFKA_SESSION_TIMEOUT_MS // 3, 100),
        "client_id": "activity-consumer",
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
    }
    config.update(overrides)
    try:
        consumer = KafkaConsumer(**config)
    except KafkaError as exc:
        raise _unavailable(exc) from exc
    return consumer
