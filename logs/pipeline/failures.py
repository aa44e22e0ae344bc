"""What can go wrong while consuming, as types that say what the consume loop does about it.

    Rejected       one record: dead-letter it with its reason, store the rest of the batch
    Transient      the step: retry it with capped, jittered backoff; nothing is committed meanwhile
    StopConsuming  the command: stop at once with one clear line and a non-zero exit, commit nothing

`classify` sorts a library's exception into the last two from what the library itself says about
it (pymongo's exception types and error labels, kafka-python's `retriable`), never "every error of
this driver is transient". An error it cannot place stops the consumer rather than retrying forever.
"""

from dataclasses import dataclass

from kafka.errors import AuthorizationError, KafkaError, SaslAuthenticationFailedError
from pymongo.errors import ConfigurationError, ConnectionFailure, OperationFailure, PyMongoError, WTimeoutError

from .broker import refusal_advice

# MongoDB error codes a retry can cure: the retryable-writes specification's list (network, not
# primary, shutting down, interrupted by a step-down) plus a write-concern timeout (64) and a
# write conflict (112). A test checks that pymongo's own list stays inside this one.
TRANSIENT_SERVER_CODES = frozenset({6, 7, 64, 89, 91, 112, 134, 189, 262, 9001, 10058, 10107, 11600, 11602,
                                    13435, 13436})
# MongoDB error codes that mean the credentials or the permissions are wrong.
ACCESS_DENIED_CODES = frozenset({13, 18})


@dataclass(frozen=True)
class Rejected:
    """A record that will never become a stored log: it goes to the dead-letter topic with `reason`."""

    record: object  # the kafka ConsumerRecord, kept whole so its original bytes go to the DLQ
    reason: str
    # record_batches.Uninflated when the record was too long to hold: `record` has only its first bytes.
    uninflated: object = None


class Transient(Exception):
    """The step failed for a reason that passes (an outage, a failover); retry it."""


class StopConsuming(Exception):
    """A configuration error no retry can cure; the message is the one line the operator reads."""


def describe(exc):
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first_line[:400]}"


def classify(exc, *, what):
    """`Transient` or `StopConsuming` for a pymongo or kafka-python error raised while doing `what`."""
    if isinstance(exc, (Transient, StopConsuming)):
        return exc
    if isinstance(exc, PyMongoError):
        if isinstance(exc, (ConnectionFailure, WTimeoutError)) or exc.has_error_label("RetryableWriteError"):
            return Transient(f"{what}: {describe(exc)}")
        if isinstance(exc, OperationFailure) and exc.code in TRANSIENT_SERVER_CODES:
            return Transient(f"{what}: {describe(exc)}")
        if isinstance(exc, OperationFailure) and exc.code in ACCESS_DENIED_CODES:
            return StopConsuming(f"{what}: MongoDB refused the credentials or permissions in MONGODB_URI "
                                 f"({describe(exc)})")
        if isinstance(exc, ConfigurationError):
            return StopConsuming(f"{what}: MONGODB_URI is not usable ({describe(exc)})")
        return StopConsuming(f"{what}: MongoDB error that a retry would not cure ({describe(exc)})")
    if isinstance(exc, (SaslAuthenticationFailedError, AuthorizationError)):
        return StopConsuming(f"{what}: {refusal_advice(exc)}")
    if isinstance(exc, KafkaError):
        if exc.retriable:
            return Transient(f"{what}: {describe(exc)}")
        return StopConsuming(f"{what}: Kafka refused it ({describe(exc)})")
    return None
