"""The one place that reaches into kafka-python's private state, for what its public API cannot say.

Every other module talks to kafka-python through its public classes; what needs more comes here, so
that a kafka-python release that changes one of these names breaks one module, and a named test.

Each private name (kafka-python 3.0.x), what it serves, and the test that fails when a release changes it:

- `KafkaConsumer._manager` (`.cluster.leader_for_partition`, `.send`, `.run`, `.wait_for`): `fetch_records`,
  one raw FetchRequest for a batch kafka-python cannot decode. Caught by tests/test_pipeline.py
  `test_a_record_with_a_header_name_that_is_not_utf8_is_dead_lettered_and_the_partition_moves_on`.
- `KafkaProducer._transaction_manager.has_fatal_error()`: `producer_has_fatal_error`, a refused
  InitProducerId, whose error type 3.0.12 loses. Caught by tests/test_secured_broker.py
  `test_a_producer_not_allowed_to_write_the_topic_stops_with_one_line_and_sends_nothing`.
- `KafkaProducer._closed`, `._accumulator._closed`, `._sender.is_alive()`: `producer_broken`, a producer
  that can never send again. Caught by tests/test_producer.py
  `test_a_producer_broken_from_another_thread_mid_run_is_replaced_and_every_event_is_acknowledged`.
- `KafkaProducer._sender` (`.force_close()`, `.join()`): `abandon_producer`, a producer closed at once with
  records still unacknowledged, which 3.0.12's `close` refuses (it flushes first and raises KafkaTimeoutError,
  leaving the producer open for its `__del__` to raise again). Caught by tests/test_redrive.py
  `test_a_stop_while_the_broker_does_not_answer_ends_the_run_at_once_and_commits_nothing_of_the_batch_in_hand`.
- the log records of the loggers `kafka.net.manager` and `kafka.net.connection`, whose arguments carry a
  refusal: `bootstrap_refusals`, a refused login, which 3.0.12's bootstrap swallows. Caught by
  tests/test_secured_broker.py `test_a_wrong_password_stops_the_producer_with_one_line_and_sends_nothing`.
- the module globals `kafka.record.default_records.{gzip,snappy,lz4,zstd}_decode` and
  `kafka.record.legacy_records.{gzip,snappy,lz4}_decode`, through which kafka-python inflates a whole record
  batch: `bound_batch_inflation` replaces them with bounded ones (docs/decisions/0018-bounded-inflation.md).
  Caught by tests/test_bounded_inflation.py
  `test_kafka_python_inflates_no_batch_past_the_bound_in_any_codec`.
- `FetchResponse`'s `aborted_transactions` (public in the protocol, but only reached through the raw fetch above):
  `fetch_records`. Caught by tests/test_transactions.py
  `test_a_raw_fetch_from_before_an_aborted_transaction_reads_only_the_committed_batch_after_it`.
- `KafkaTCPTransport._sock_recv` and `KafkaSSLTransport._sock_recv` (kafka.net.transport): replaced by
  `_keep_data_read_before_the_end`, see `deliver_data_read_before_the_end_of_stream`. Caught by
  tests/test_kafka_internals.py, and by the wrong-password tests of tests/test_secured_broker.py.
- `KafkaConsumer._coordinator` (`._join_task.is_done`, `.need_rejoin()`, `.request_rejoin()`):
  `rebalance_left_unapplied` and `rejoin_after_a_dropped_rebalance`, a finished group join whose assignment
  3.0.12 never applies. Caught by tests/test_kafka_internals.py
  `test_a_rebalance_that_outlasts_its_poll_still_assigns_the_partitions`.

Each function says what it returns when the private name is missing: the conservative answer, never an
AttributeError in the consume loop.
"""

import contextlib
import functools
import logging
from dataclasses import dataclass

from kafka.errors import (
    AuthorizationError,
    CorruptRecordError,
    KafkaTimeoutError,
    NoError,
    SaslAuthenticationFailedError,
    for_code,
)
from kafka.net import transport
from kafka.protocol.consumer import FetchRequest
from kafka.record import default_records, legacy_records

from . import compression

# Where kafka-python 3.0.12 reports a failed bootstrap connection, the refusal object among its arguments:
# the connection manager ("Bootstrap connection to %s failed: %s") and the connection ("Connection lost: %s").
BOOTSTRAP_LOGGERS = ("kafka.net.manager", "kafka.net.connection")
# The protocol's isolation levels (FetchRequest v4+): read_committed leaves out what aborted transactions wrote.
READ_UNCOMMITTED, READ_COMMITTED = 0, 1
# Where kafka-python 3.0.x inflates a record batch whole: (module, global it calls, codec).
_BATCH_INFLATERS = (
    (default_records, "gzip_decode", compression.GZIP),
    (default_records, "snappy_decode", compression.SNAPPY),
    (default_records, "lz4_decode", compression.LZ4),
    (default_records, "zstd_decode", compression.ZSTD),
    # Message formats v0/v1 (Kafka before 0.11) inflate a wrapper message; v0's lz4 framing, which no
    # broker since 0.10 writes, is left as it is.
    (legacy_records, "gzip_decode", compression.GZIP),
    (legacy_records, "snappy_decode", compression.SNAPPY),
    (legacy_records, "lz4_decode", compression.LZ4),
)


class FetchFailed(Exception):
    """The broker's answer to a raw fetch is not one partition's records."""


class BatchTooLargeToInflate(CorruptRecordError):
    """kafka-python was about to inflate a record batch past the bound: the batch is left to `record_batches`.

    A CorruptRecordError, so the consumer meets it at poll like any batch kafka-python cannot decode.
    """


@dataclass(frozen=True)
class FetchedRecords:
    records: bytes  # the records field of the answer: whole record batches, the last one possibly cut off
    aborted_transactions: list  # [(producer id, first offset)] of the aborted transactions among them


def bound_batch_inflation(max_bytes):
    """From now on, in this process, kafka-python inflates no record batch past `max_bytes`.

    kafka-python inflates a compressed batch whole before reading its first record; these replace the
    functions it calls with ones that stop at `max_bytes` and raise BatchTooLargeToInflate, so that a
    decompression bomb costs the bound, not what it inflates to. Idempotent; the last bound set holds.
    Raises RuntimeError when this kafka-python no longer has one of the functions: the bound would be
    silently lost otherwise.
    """
    for module, name, codec in _BATCH_INFLATERS:
        if not callable(getattr(module, name, None)):
            raise RuntimeError(f"kafka-python changed: {module.__name__}.{name} is gone, so batch inflation "
                               "cannot be bounded (logs/pipeline/kafka_internals.py)")
        setattr(module, name, _bounded(codec, max_bytes))


def _bounded(codec, max_bytes):
    def inflate(payload):
        try:
            return compression.inflate(codec, payload, limit=max_bytes)
        except compression.InflatesPastLimit:
            raise BatchTooLargeToInflate(f"a {compression.NAMES[codec]} record batch of {len(payload)} bytes "
                                         f"inflates past {max_bytes} bytes") from None
    return inflate


def fetch_records(reader, partition, offset, *, max_bytes, timeout_ms, isolation_level=READ_COMMITTED):
    """The answer to one FetchRequest for `partition` at `offset`, sent on `reader`'s connections.

    kafka-python has no public call for one raw fetch; this sends it through its connection manager
    as its own fetcher does, on a reader (a KafkaConsumer) that has just read the partition, so its
    metadata knows the leader. A partition error in the answer is raised as kafka-python's error type.
    The broker returns the first batch whole even when it is larger than `max_bytes` (KIP-74).
    """
    manager = reader._manager
    request = FetchRequest(
        max_wait_ms=500, min_bytes=1, max_bytes=max_bytes, isolation_level=isolation_level, session_id=0,
        session_epoch=-1,
        topics=[FetchRequest.FetchTopic(topic=partition.topic, partitions=[FetchRequest.FetchTopic.FetchPartition(
            partition=partition.partition, current_leader_epoch=-1, fetch_offset=offset, last_fetched_epoch=-1,
            partition_max_bytes=max_bytes)])],
        forgotten_topics_data=[], rack_id="", min_version=4, max_version=12)
    node = manager.cluster.leader_for_partition(partition)
    response = manager.run(manager.wait_for, manager.send(request, node_id=node), timeout_ms)
    answers = [each for topic in response.responses for each in topic.partitions]
    if len(answers) != 1:
        raise FetchFailed(f"the broker answered the fetch with {len(answers)} partitions")
    [data] = answers
    error = for_code(data.error_code)
    if error is not NoError:
        raise error(f"fetching {partition.topic}[{partition.partition}]@{offset}")
    return FetchedRecords(bytes(data.records or b""), [(aborted.producer_id, aborted.first_offset)
                                                       for aborted in data.aborted_transactions or ()])


def producer_has_fatal_error(producer):
    """True when kafka-python put `producer` in its fatal state (3.0.12 does so for a refused InitProducerId,
    an idempotent producer's first request, raising a plain KafkaError with the type lost); False when it
    is not, or when this kafka-python has no transaction manager to ask."""
    manager = getattr(producer, "_transaction_manager", None)
    return manager is not None and manager.has_fatal_error()


def producer_broken(producer):
    """True when a kafka-python producer can never send again: closed or being closed (its accumulator
    refuses records from the start of `close`; `_closed` is set only at its end), or its I/O thread is gone.
    False when none of the names is there to say so."""
    sender = getattr(producer, "_sender", None)
    accumulator = getattr(producer, "_accumulator", None)
    return (bool(getattr(producer, "_closed", False)) or bool(getattr(accumulator, "_closed", False))
            or (sender is not None and not sender.is_alive()))


def abandon_producer(producer, *, timeout=5):
    """Close `producer` now, failing what it has not had acknowledged (IllegalStateError on those futures).

    kafka-python has no public call for it: `close(timeout)` flushes first, and raises while records are
    pending. Its I/O thread is told to close forcefully (which fails the pending batches) and joined, after
    which `close` has nothing to wait for. Without `_sender`, the plain close is tried and its timeout ignored.
    """
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(timeout)
    try:
        producer.close(timeout=0)
    except KafkaTimeoutError:
        pass


class _RefusalCatcher(logging.Filter):
    """Keeps the last authentication or authorization refusal among the arguments of a log record, and
    lets through to the handlers only the records the logger's configured level would have shown."""

    def __init__(self, shown_from):
        super().__init__()
        self.shown_from = shown_from
        self.refusal = None

    def filter(self, record):
        for argument in record.args if isinstance(record.args, tuple) else ():
            if isinstance(argument, (SaslAuthenticationFailedError, AuthorizationError)):
                self.refusal = argument
        return record.levelno >= self.shown_from


@contextlib.contextmanager
def bootstrap_refusals():
    """Within the block, the refusal kafka-python's bootstrap met is kept in the yielded object's `refusal`.

    kafka-python 3.0.12 catches the SaslAuthenticationFailedError of a bootstrap connection, logs it and
    tries again until bootstrap_timeout_ms, then raises a retriable KafkaTimeoutError without it
    (net/manager.py, `_do_bootstrap`): its log records, which carry the refusal as an argument, are the
    only place it is. What the loggers would have shown anyway is still shown.
    """
    loggers = [logging.getLogger(name) for name in BOOTSTRAP_LOGGERS]
    levels = [logger.level for logger in loggers]
    catcher = _RefusalCatcher(min(logger.getEffectiveLevel() for logger in loggers))
    for logger in loggers:
        logger.addFilter(catcher)
        logger.setLevel(min(catcher.shown_from, logging.WARNING))
    try:
        yield catcher
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
            logger.removeFilter(catcher)


def deliver_data_read_before_the_end_of_stream():
    """Make kafka-python hand over the bytes it read together with the end of the stream, instead of dropping them.

    kafka-python 3.0.12's transports read a socket until it would block, then report the bytes and an error
    together, and the reader drops the bytes when there is an error (`_read_from_sock`). Apache Kafka answers a
    refused login with an error response and then closes the connection, so whenever both arrive before the
    client reads, the answer is lost: the refusal looks like a broken connection, and a wrong password like an
    outage waited out for ever. With this, bytes read before the end are delivered as a read of their own, and
    the end of the stream is met again, and reported, at the next read (a socket at its end stays readable and
    reads empty). Applied once, at import; idempotent.
    """
    for transport_class in (transport.KafkaTCPTransport, transport.KafkaSSLTransport):
        read = transport_class.__dict__["_sock_recv"]
        if not getattr(read, "keeps_data_read_before_the_end", False):
            transport_class._sock_recv = _keep_data_read_before_the_end(read)


def _keep_data_read_before_the_end(read):
    @functools.wraps(read)
    def sock_recv(self):
        data, error = read(self)
        return (data, None) if data and error is not None else (data, error)

    sock_recv.keeps_data_read_before_the_end = True
    return sock_recv


deliver_data_read_before_the_end_of_stream()


def rejoin_after_a_dropped_rebalance(consumer):
    """Whether the group had to be joined again because kafka-python dropped a finished rebalance.

    kafka-python 3.0.x runs a rebalance's JoinGroup and SyncGroup as a task that `poll` waits on for at most
    its own timeout, and awaits a task still running at a later poll only while the coordinator still wants
    to rejoin. A rebalance started because the subscribed topic's partitions changed (a topic just created,
    partitions added) stops being wanted as soon as the leader has computed the assignment, so when the
    round trip outlasts the poll that began it, the assignment it brings back is never applied: the member
    holds no partitions and sends no heartbeats, and nothing brings it back. Asking for a rejoin makes the
    next poll join again and apply what it gets. Without the private names: False, nothing done.
    """
    if not rebalance_left_unapplied(consumer):
        return False
    consumer._coordinator.request_rejoin()
    return True


def rebalance_left_unapplied(consumer):
    """Whether the consumer's last group join finished and no poll will apply it (see
    `rejoin_after_a_dropped_rebalance`). Without the private names: False."""
    coordinator = getattr(consumer, "_coordinator", None)
    task = getattr(coordinator, "_join_task", None)
    return task is not None and getattr(task, "is_done", False) and not coordinator.need_rejoin()
