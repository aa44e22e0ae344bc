"""One structured log line per read of the API: who read whose logs, with which query, and the answer.

The line goes to the `logs.audit` logger at INFO whatever LOG_LEVEL says; with LOG_FORMAT=json each
field is a JSON key, so a log collector can answer "who read user-42's activity last week". Building
it costs a dict and a logging call, never a database round trip.
"""

import logging
import re

from rest_framework.exceptions import APIException

audit_log = logging.getLogger("logs.audit")

# `name=value` pairs of characters that URL-encoding leaves as they are, joined by single `&`s.
_PLAIN_PAIRS = re.compile(r"(?:[A-Za-z0-9_.~-]+=[A-Za-z0-9_.~-]*(?:&[A-Za-z0-9_.~-]+=[A-Za-z0-9_.~-]*)*)?")


def authenticated_user(request):
    """The caller's account, or None when it sent no credentials or credentials that failed."""
    try:
        user = request.user
    except APIException:  # authentication had not run yet (e.g. a 406) and fails now
        return None
    return user if user.is_authenticated else None


def record_read(*, request, status, owner, log_id=None):
    """`owner` is the userId whose logs were read or asked for; None for every user's, or when unknown."""
    user = authenticated_user(request)
    principal = user.get_username() if user else None
    audit_log.info(
        "read %s by %s: %s",
        request.get_full_path(),
        principal,
        status,
        extra={
            "principal": principal,
            "owner": owner,
            "log_id": log_id,
            "query": normalized_query(request),
            "status": status,
        },
    )


def normalized_query(request):
    """The query string as Django's `QueryDict.urlencode()` writes it back: each parameter's values together,
    in the order of their first appearance, each name and value URL-encoded.

    What API clients send (`userId=user-1&action=send`) is already written so when its pairs need no encoding
    and name each parameter once; it is then kept as sent, without parsing and re-encoding each pair.
    """
    raw = request.META.get("QUERY_STRING", "")
    if _PLAIN_PAIRS.fullmatch(raw):
        names = [pair.partition("=")[0] for pair in raw.split("&")] if raw else []
        if len(set(names)) == len(names):
            return raw
    return request.query_params.urlencode()
