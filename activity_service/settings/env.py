"""The one place that reads the process environment; every setting goes through these.

Every variable NAME can also be given as NAME_FILE, the path of a file holding the value: that is
how Kubernetes and docker-compose hand over secrets without putting them in the environment, where
`ps`, crash reports and child processes would see them.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def _read(name):
    """The value of NAME, or of the file NAME_FILE names; None when neither is set."""
    path = os.environ.get(f"{name}_FILE")
    if not path:
        return os.environ.get(name)
    if os.environ.get(name) is not None:
        raise ImproperlyConfigured(f"{name} and {name}_FILE are both set; set only one")
    try:
        # Files written with `echo` end in a newline that is no part of the value.
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read ({exc})") from None


def env_str(name, default):
    value = _read(name)
    return default if value is None else value


def env_int(name, default, *, minimum=None):
    raw = _read(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_bool(name, default):
    raw = _read(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true or false)")


def env_list(name, default):
    raw = _read(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]
