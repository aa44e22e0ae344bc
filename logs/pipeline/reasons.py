"""Dead-letter reasons sorted into a small fixed set of classes, for metrics and alerts.

A reason is free text that quotes the offending value, so it cannot be a metric label: every distinct
bad record would make a new time series. Its class can: `reason_class` maps every reason the consumer
writes (logs/events.py, record_batches.py, ingestion.py) to one of `REASON_CLASSES`, and
tests/test_observability.py feeds each kind of bad record through the real decoder to hold it to that.
The reason text itself stays on the dead-letter record (`dlq.reason`) and in the consumer's log.
"""

import re

from ..events import ALL_FIELDS

NOT_JSON = "not_json"
NOT_UTF8 = "not_utf8"
TOO_LARGE = "too_large"
SCHEMA = "schema"
CONFLICTING_CONTENT = "conflicting_content"
REFUSED_BY_MONGODB = "refused_by_mongodb"
HEADER = "header"
MALFORMED_RECORD = "malformed_record"
TIMESTAMP_IN_FUTURE = "timestamp_in_future"
KEY_MISMATCH = "key_mismatch"
OTHER = "other"

REASON_CLASSES = (NOT_JSON, NOT_UTF8, TOO_LARGE, SCHEMA, CONFLICTING_CONTENT, REFUSED_BY_MONGODB, HEADER,
                  MALFORMED_RECORD, TIMESTAMP_IN_FUTURE, KEY_MISMATCH, OTHER)

# First match wins. The rules that look inside the text come before the field-prefix rule of SCHEMA,
# because their reasons may also start with a field's name ("timestamp: ... in the future").
_RULES = (
    (TIMESTAMP_IN_FUTURE, re.compile(r"\bin the future\b")),
    (KEY_MISMATCH, re.compile(r"\bkey does not match userId\b")),
    (CONFLICTING_CONTENT, re.compile(r"^eventId already stored with different content")),
    (REFUSED_BY_MONGODB, re.compile(r"^refused by MongoDB\b")),
    (HEADER, re.compile(r"^header\b")),
    (MALFORMED_RECORD, re.compile(r"^malformed record\b")),
    (NOT_UTF8, re.compile(r"^not UTF-8\b")),
    (NOT_JSON, re.compile(r"^(not JSON\b|empty message\b)")),
    (TOO_LARGE, re.compile(r"^(too large\b|not an event: \d+ JSON objects/arrays|record of \d+ bytes inflates past)")),
    (SCHEMA, re.compile(r"^(must be a JSON object\b|(?:%s): )|: unknown field\b"
                        % "|".join(sorted(map(re.escape, ALL_FIELDS))))),
)


def reason_class(reason):
    """The class of a dead-letter reason: one of REASON_CLASSES, OTHER for a reason no rule knows."""
    for name, pattern in _RULES:
        if pattern.search(reason):
            return name
    return OTHER
