"""Kafka and MongoDB: where events come from and where they are stored (docs/contract.md "Configuration")."""

from .env import env_int, env_str

KAFKA_BOOTSTRAP_SERVERS = env_str("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
# How every Kafka client logs in (logs/pipeline/broker.py checks the combination): PLAINTEXT, SSL, SASL_PLAINTEXT
# or SASL_SSL; with SASL, a mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; PLAIN when unset), a user
# and a password (KAFKA_SASL_PASSWORD_FILE for a mounted secret). KAFKA_SSL_CAFILE: the CA bundle that
# signs the brokers' certificates, when it is not one the system trusts.
KAFKA_SECURITY_PROTOCOL = env_str("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
KAFKA_SASL_MECHANISM = env_str("KAFKA_SASL_MECHANISM", "")
KAFKA_SASL_USERNAME = env_str("KAFKA_SASL_USERNAME", "")
KAFKA_SASL_PASSWORD = env_str("KAFKA_SASL_PASSWORD", "")
KAFKA_SSL_CAFILE = env_str("KAFKA_SSL_CAFILE", "")
KAFKA_TOPIC = env_str("KAFKA_TOPIC", "transaction-activity")
KAFKA_DLQ_TOPIC = env_str("KAFKA_DLQ_TOPIC", "transaction-activity.dlq")
# Largest dead-letter record the consumer sends; a bigger original is cut to fit. Below Apache Kafka's
# default 1 MB record limit (message.max.bytes), with room for the batch and header overhead.
KAFKA_DLQ_MAX_RECORD_BYTES = env_int("KAFKA_DLQ_MAX_RECORD_BYTES", 900_000, minimum=4096)
KAFKA_CONSUMER_GROUP = env_str("KAFKA_CONSUMER_GROUP", "activity-log-consumer")
# Memory (docs/decisions/0018-bounded-inflation.md). A record (key, value and headers) that inflates past
# KAFKA_MAX_RECORD_BYTES is never held: it is dead-lettered by reference. An event is under a kilobyte; the
# bound is at least the event decoder's own size limit (16 KiB).
KAFKA_MAX_RECORD_BYTES = env_int("KAFKA_MAX_RECORD_BYTES", 1024 * 1024, minimum=16 * 1024)
# kafka-python inflates a compressed batch whole; one that would inflate past this is read a record at a
# time instead. Producers' batches inflate to far less; the consumer's memory grows by a few times this.
KAFKA_MAX_BATCH_INFLATED_BYTES = env_int("KAFKA_MAX_BATCH_INFLATED_BYTES", 16 * 1024 * 1024, minimum=1024 * 1024)
# How far an event's timestamp may run ahead of its Kafka record's (docs/contract.md "The event"): the
# producers' clocks may differ from each other by this much.
ACTIVITY_MAX_CLOCK_SKEW_SECONDS = env_int("ACTIVITY_MAX_CLOCK_SKEW_SECONDS", 300, minimum=0)
# The group `redrive_dead_letters` keeps its position on KAFKA_DLQ_TOPIC in; empty: KAFKA_CONSUMER_GROUP + ".redrive"
# (logs/pipeline/broker.py `redrive_group`). A `--reason` run uses a group of its own under it.
KAFKA_REDRIVE_GROUP = env_str("KAFKA_REDRIVE_GROUP", "")
KAFKA_TOPIC_PARTITIONS = env_int("KAFKA_TOPIC_PARTITIONS", 3, minimum=1)
# One broker locally; production clusters raise it (3 is usual) so a broker loss loses nothing.
KAFKA_TOPIC_REPLICATION_FACTOR = env_int("KAFKA_TOPIC_REPLICATION_FACTOR", 1, minimum=1)
KAFKA_SESSION_TIMEOUT_MS = env_int("KAFKA_SESSION_TIMEOUT_MS", 10000, minimum=1000)
# Longest pause between two polls before the group takes the member's partitions away (Kafka's default).
KAFKA_MAX_POLL_INTERVAL_MS = env_int("KAFKA_MAX_POLL_INTERVAL_MS", 300000, minimum=1000)
# The consumer serves Prometheus metrics, /healthz and /readyz on this port; 0 turns them off.
METRICS_PORT = env_int("METRICS_PORT", 9100, minimum=0)
# The producer's metrics, /healthz and /readyz; off by default so a local producer and consumer never
# compete for one port.
PRODUCER_METRICS_PORT = env_int("PRODUCER_METRICS_PORT", 0, minimum=0)
# /healthz of the consumer and the producer fails once their loop has not turned for this long. Above
# the longest legitimate pause: kafka-python's 60 s wait for a broker (max_block_ms) and a 30 s retry backoff.
LIVENESS_TIMEOUT_SECONDS = env_int("LIVENESS_TIMEOUT_SECONDS", 120, minimum=1)

MONGODB_URI = env_str("MONGODB_URI", "mongodb://localhost:27017/activity_logs")
# How long a database call may wait for a reachable server before it counts as an outage.
MONGODB_SERVER_SELECTION_TIMEOUT_MS = env_int("MONGODB_SERVER_SELECTION_TIMEOUT_MS", 5000, minimum=100)
MONGODB_CONNECT_TIMEOUT_MS = env_int("MONGODB_CONNECT_TIMEOUT_MS", 2000, minimum=100)
# Everything one API request does with the database (server selection, connecting, every query and count)
# must fit in this budget, or the request is a 503/504. Below the probes' 5 s timeout, so a /readyz during
# an outage answers 503 rather than timing out, and far below what a client waits.
API_DATABASE_TIMEOUT_MS = env_int("API_DATABASE_TIMEOUT_MS", 2500, minimum=50)
# Logs whose event timestamp is older than this many days are deleted by a TTL index; 0 keeps them for ever.
ACTIVITY_LOG_RETENTION_DAYS = env_int("ACTIVITY_LOG_RETENTION_DAYS", 0, minimum=0)
