"""Kafka clients configured from settings, and the topics they need.

Everything that knows kafka-python's constructor arguments lives here, so the producer, the
consumer, the dead-letter queue, the tests and the benchmarks all talk to Kafka the same way.
"""

import contextlib
import logging
import os
import re

from django.conf import settings
from django.core.management.base import CommandError
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import AuthorizationError, KafkaError, SaslAuthenticationFailedError, TopicAlreadyExistsError

from .kafka_internals import bootstrap_refusals, bound_batch_inflation, producer_has_fatal_error

log = logging.getLogger(__name__)

# How long a client keeps trying to reach the first broker before giving up with a clear error.
BOOTSTRAP_TIMEOUT_MS = 10_000
# What one fetch may bring, compressed, over all partitions (kafka-python's default is 50 MiB): it is held
# in memory until read (docs/decisions/0018-bounded-inflation.md). Far above what one poll consumes.
FETCH_MAX_BYTES = 16 * 1024 * 1024


# The codecs Kafka has; kafka-python needs gzip (standard library), python-snappy, lz4 and zstandard.
COMPRESSION_CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
# host[:port] (kafka-python's default port is 9092): a name, an IPv4 address or a bracketed IPv6 address.
_SERVER = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?")
# Apache Kafka's rule for topic names (some stand-ins accept more; the real broker refuses them).
LEGAL_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class BrokerUnavailable(RuntimeError):
    """Kafka could not be reached; the message says where we looked and what to do."""


class BrokerMisconfigured(CommandError):
    """KAFKA_BOOTSTRAP_SERVERS cannot name a broker, or the KAFKA_SECURITY_PROTOCOL/SASL/SSL settings do
    not make a way to log in: never worth a retry.

    A CommandError, so that every command shows it as one line and exits non-zero.
    """


class BrokerRefused(CommandError):
    """Kafka refused the credentials or the permissions of this client: never worth a retry.

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


def topic_configuration_errors(topic, dlq_topic):
    """What is wrong with KAFKA_TOPIC and KAFKA_DLQ_TOPIC before any client is built, as one line each."""
    errors = [f"{name}={value!r} is not a legal Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)"
              for name, value in (("KAFKA_TOPIC", topic), ("KAFKA_DLQ_TOPIC", dlq_topic))
              if not LEGAL_TOPIC_NAME.fullmatch(value)]
    if dlq_topic == topic:
        errors.append(f"KAFKA_DLQ_TOPIC equals KAFKA_TOPIC ({topic}): rejects would be consumed again forever; "
                      "set a different dead-letter topic")
    return errors


def redrive_group():
    """The consumer group `redrive_dead_letters` keeps its position in: KAFKA_REDRIVE_GROUP, or one derived
    from KAFKA_CONSUMER_GROUP (read at each call, so that the group follows the consumer's)."""
    return settings.KAFKA_REDRIVE_GROUP or f"{settings.KAFKA_CONSUMER_GROUP}.redrive"


def security_config():
    """kafka-python's arguments for logging in, from KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_CAFILE;
    BrokerMisconfigured for a combination that cannot work (one line saying which setting to change)."""
    protocol = settings.KAFKA_SECURITY_PROTOCOL.strip().upper()
    mechanism = settings.KAFKA_SASL_MECHANISM.strip().upper()
    username, password, cafile = settings.KAFKA_SASL_USERNAME, settings.KAFKA_SASL_PASSWORD, settings.KAFKA_SSL_CAFILE
    if protocol not in SECURITY_PROTOCOLS:
        raise BrokerMisconfigured(f"KAFKA_SECURITY_PROTOCOL={settings.KAFKA_SECURITY_PROTOCOL!r} is not one of "
                                  f"{', '.join(SECURITY_PROTOCOLS)}")
    config = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        mechanism = mechanism or "PLAIN"
        if mechanism not in SASL_MECHANISMS:
            raise BrokerMisconfigured(f"KAFKA_SASL_MECHANISM={settings.KAFKA_SASL_MECHANISM!r} is not one of "
                                      f"{', '.join(SASL_MECHANISMS)}")
        missing = [name for name, value in (("KAFKA_SASL_USERNAME", username), ("KAFKA_SASL_PASSWORD", password))
                   if not value]
        if missing:
            raise BrokerMisconfigured(f"KAFKA_SECURITY_PROTOCOL={protocol} needs {' and '.join(missing)} "
                                      "(the password may come from KAFKA_SASL_PASSWORD_FILE)")
        config.update(sasl_mechanism=mechanism, sasl_plain_username=username, sasl_plain_password=password)
    elif mechanism or username or password:
        raise BrokerMisconfigured(f"KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD is set but "
                                  f"KAFKA_SECURITY_PROTOCOL={protocol} does not use them: set it to SASL_SSL "
                                  "(or SASL_PLAINTEXT), or unset them")
    if cafile:
        if not protocol.endswith("SSL"):
            raise BrokerMisconfigured(f"KAFKA_SSL_CAFILE is set but KAFKA_SECURITY_PROTOCOL={protocol} has no TLS: "
                                      "set it to SSL or SASL_SSL, or unset KAFKA_SSL_CAFILE")
        if not os.access(cafile, os.R_OK) or not os.path.isfile(cafile):
            raise BrokerMisconfigured(f"KAFKA_SSL_CAFILE={cafile!r} is not a readable file")
        config["ssl_cafile"] = cafile
    return config


def client_config(**overrides):
    """What every kafka-python client the project builds is given: where the brokers are and how to log in."""
    return {"bootstrap_servers": bootstrap_servers(), "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
            **security_config(), **overrides}


def consumer_grants():
    """The ACLs the consumer's Kafka user needs, as the advice of a refusal says them."""
    return (f"Describe and Read on topic {settings.KAFKA_TOPIC}, Read on group {settings.KAFKA_CONSUMER_GROUP} "
            f"and Describe and Write on topic {settings.KAFKA_DLQ_TOPIC}")


def producer_grants():
    """The ACLs the producer's Kafka user needs."""
    return f"Describe and Write on topic {settings.KAFKA_TOPIC}"


def redrive_grants():
    """The ACLs the user of `redrive_dead_letters` needs (a prefixed group ACL covers its `--reason` groups)."""
    return (f"Describe and Read on topic {settings.KAFKA_DLQ_TOPIC}, Read on the groups prefixed {redrive_group()} "
            f"and Describe and Write on topic {settings.KAFKA_TOPIC}")


def refusal_advice(exc, *, grants=consumer_grants):
    """One line for an authentication or authorization refusal: what Kafka said and what to change."""
    user = settings.KAFKA_SASL_USERNAME or "(no KAFKA_SASL_USERNAME: the anonymous user)"
    if isinstance(exc, SaslAuthenticationFailedError):
        return (f"Kafka refused the login of user {user} ({type(exc).__name__}): check KAFKA_SASL_USERNAME, "
                "KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM")
    return (f"Kafka user {user} is not allowed to do this ({type(exc).__name__}: {_first_line(exc)}): grant it "
            f'{grants()} (docs/operations.md "Secured Kafka")')


def refuses_client(producer, exc):
    """True when Kafka refused a producer itself, not one event: its login or an ACL, or kafka-python's
    fatal state (where 3.0.12 puts a refused InitProducerId; Kafka allows it to a user with Write on some
    topic)."""
    return isinstance(exc, (AuthorizationError, SaslAuthenticationFailedError)) or producer_has_fatal_error(producer)


def _first_line(exc):
    return (str(exc).splitlines() or [""])[0][:300]


@contextlib.contextmanager
def _connecting():
    """Build a client: BrokerRefused when the broker refused our login, BrokerUnavailable when it is away.

    A refusal met while bootstrapping is read where kafka-python leaves it (`kafka_internals.bootstrap_refusals`):
    without it a wrong password would look like an outage and be waited out for ever.
    """
    with bootstrap_refusals() as refusals:
        try:
            yield
        except (SaslAuthenticationFailedError, AuthorizationError) as exc:
            raise BrokerRefused(refusal_advice(exc)) from exc
        except KafkaError as exc:
            if refusals.refusal is not None:
                raise BrokerRefused(refusal_advice(refusals.refusal)) from refusals.refusal
            raise _unavailable(exc) from exc


def _unavailable(exc):
    detail = str(exc) if str(exc).startswith(type(exc).__name__) else f"{type(exc).__name__}: {exc}"
    return BrokerUnavailable(
        f"cannot reach Kafka at {settings.KAFKA_BOOTSTRAP_SERVERS} ({detail}). "
        "Start the local stack with `make services`, or point KAFKA_BOOTSTRAP_SERVERS at a running broker."
    )


def ensure_topics(*names, partitions=None):
    """Create missing topics with the configured partition count; existing topics are left as they are."""
    partitions = partitions or settings.KAFKA_TOPIC_PARTITIONS
    with _connecting():
        admin = KafkaAdminClient(**client_config(client_id="activity-admin"))
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
            except AuthorizationError as exc:
                # Metadata lists only the topics a user may describe: "missing" may also be "not visible".
                raise BrokerRefused(
                    f"topic {', '.join(missing)} does not exist or Kafka user "
                    f"{settings.KAFKA_SASL_USERNAME or '(anonymous)'} may not see it, and it may not create it "
                    f"({type(exc).__name__}): create the topic (kafka-topics --create), or grant the user Describe "
                    "on it (and Create, for the commands to create it)") from exc
    finally:
        admin.close()


def create_producer(**overrides):
    """A producer that waits for all in-sync replicas: an acknowledged event is not lost.

    Retries can duplicate a message on the topic; that is safe because the consumer stores each
    eventId once.
    """
    config = client_config(**{"acks": "all", "linger_ms": 5, "retries": 5, "client_id": "activity-producer",
                              **overrides})
    with _connecting():
        return KafkaProducer(**config)


def create_consumer(**overrides):
    """A group member that commits nothing by itself: offsets are committed after storage.

    It reads committed data only (docs/contract.md "Delivery and storage guarantees"): what a transaction
    that its producer aborted wrote is never delivered, nor are the transaction markers. kafka-python
    inflates no batch past KAFKA_MAX_BATCH_INFLATED_BYTES in this process from here on.

    kafka-python's own metrics are off: nothing reads them (the consumer's are its Prometheus metrics,
    metrics.py), and its sensors would be updated on every request, response and fetched partition, on
    both the loop's thread and the client's I/O thread.
    """
    bound_batch_inflation(settings.KAFKA_MAX_BATCH_INFLATED_BYTES)
    config = client_config(**{
        "isolation_level": "read_committed",
        "fetch_max_bytes": FETCH_MAX_BYTES,
        "group_id": settings.KAFKA_CONSUMER_GROUP,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.KAFKA_SESSION_TIMEOUT_MS,
        "max_poll_interval_ms": settings.KAFKA_MAX_POLL_INTERVAL_MS,
        "heartbeat_interval_ms": max(settings.KAFKA_SESSION_TIMEOUT_MS // 3, 100),
        "client_id": "activity-consumer",
        "metrics_enabled": False,
        **overrides,
    })
    with _connecting():
        return KafkaConsumer(**config)
