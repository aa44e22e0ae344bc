"""One structured log line per read of the API: who read whose logs, with which query, and the answer.

The line goes to the `logs.audit` logger at INFO whatever LOG_LEVEL says; with LOG_FORMAT=json each
field is a JSON key, so a log collector can answer "who read user-42's activity last week". Building
it costs a dict and a logging call, never a database round trip.
"""

import logging

from rest_framework.exceptions import APIException

audit_log = logging.getLogger("logs.audit")


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
            "query": request.query_params.urlencode(),
            "status": status,
        },
    )
