"""Log record formats. `JsonFormatter` writes one JSON object per line for log collectors
(Loki, Fluent Bit, CloudWatch) that index fields instead of parsing free text."""

import json
import logging
import logging.config
from datetime import datetime, timezone

# Attributes every LogRecord has; anything else on a record came from `extra=` and is kept.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One line per record: time, level, logger, message, `extra=` fields, and the traceback if any."""

    def format(self, record):
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRIBUTES and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an `extra=` value that JSON cannot encode must not lose the log line.
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(logging_settings):
    """Django's LOGGING_CONFIG: the LOGGING dict, plus Python warnings routed through logging, so
    that they too come out in the chosen format instead of as bare lines on stderr."""
    logging.config.dictConfig(logging_settings)
    logging.captureWarnings(True)
