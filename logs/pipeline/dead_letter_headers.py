"""The headers of a dead-letter copy: what the consumer writes (`ingestion.dead_letter_record`) and the
re-drive reads back (`redrive`), named once (docs/contract.md "Delivery and storage guarantees").

Every name starts with `dlq.`: the consumer drops each such header a record arrives with, so that no
producer can forge a reason, except a well-formed `dlq.redrive.attempt`, the one count that must survive
a record re-driven and rejected again.
"""

import re

PREFIX = "dlq."
REASON = "dlq.reason"
SOURCE_TOPIC = "dlq.source.topic"
SOURCE_PARTITION = "dlq.source.partition"
SOURCE_OFFSET = "dlq.source.offset"
CONSUMER_GROUP = "dlq.consumer.group"
# A copy cut to fit: the original's size and SHA-256, and the flag; the whole original is at the source coordinates.
ORIGINAL_SIZE = "dlq.original.size"
ORIGINAL_SHA256 = "dlq.original.sha256"
ORIGINAL_TRUNCATED = "dlq.original.truncated"
# A record too long to inflate, sent by reference (its first bytes only): the compressed size of its batch.
ORIGINAL_BATCH_COMPRESSED_SIZE = "dlq.original.batch.compressed.size"
# What was null in the original, comma-separated: `value` (the copy carries an empty value instead), and
# `header:<i>` for the i-th (0-based) original header kept in the copy (carried with an empty value).
ORIGINAL_NULL = "dlq.original.null"
NULL_VALUE = "value"
NULL_HEADER_PREFIX = "header:"
# How many times the record has been put back on its source topic by `redrive_dead_letters`.
REDRIVE_ATTEMPT = "dlq.redrive.attempt"

# The most re-drives a record can count; a larger or malformed count is no count at all. Far above any
# sensible --max-attempts, and short enough that the header stays a few bytes.
MAX_REDRIVE_ATTEMPTS = 999
_ATTEMPT = re.compile(rb"[1-9][0-9]{0,2}")


def is_dead_letter_header(name):
    return name.startswith(PREFIX)


def redrive_attempt(headers):
    """The re-drive count among `headers` (name, value pairs): a whole number from 1 to MAX_REDRIVE_ATTEMPTS,
    in ASCII digits, given once; None for anything else (missing, repeated, malformed), which counts as none."""
    values = [value for name, value in headers or () if name == REDRIVE_ATTEMPT]
    if len(values) != 1 or not isinstance(values[0], bytes) or not _ATTEMPT.fullmatch(values[0]):
        return None
    return int(values[0])


def redrive_attempt_header(attempt):
    return REDRIVE_ATTEMPT, str(attempt).encode()
