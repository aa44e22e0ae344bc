"""Every API request has a deadline for its database calls (`API_DATABASE_TIMEOUT_MS`), counted from arrival.

The server that runs the app may put the moment a request reached it in the WSGI environ under `ARRIVED`
(a `time.monotonic()` value), so that time spent waiting for a thread counts against the deadline; without
it the deadline counts from when Django starts on the request. This key is the one contract between the
app and the server in front of it: the server imports it from here, the app never imports the server.
"""

import time

import mongoengine
import pymongo
from django.conf import settings
from pymongo.errors import PyMongoError

ARRIVED = "activity_service.arrived"


def api_seconds_left(arrived=None):
    """What is left of a request's deadline (`API_DATABASE_TIMEOUT_MS`), counted from `arrived`, the
    `time.monotonic()` at which it reached the server (None: from now)."""
    seconds = settings.API_DATABASE_TIMEOUT_MS / 1000
    return seconds if arrived is None else seconds - (time.monotonic() - arrived)


def api_database_deadline(arrived=None):
    """A deadline for every database call of one API request (pymongo's client-side operation timeout).

    Inside it pymongo bounds server selection, connecting and reading by the time left, and sends that
    time as `maxTimeMS` with every query and count, so the server gives up too; running out raises a
    PyMongoError whose `timeout` is true. The deadline counts from `arrived`, so the time a request
    waited for a thread is part of it: during an outage a request queued behind others is answered
    within the same deadline as they are, not one deadline per request ahead of it. The consumer has
    no such deadline: it retries instead.
    """
    return pymongo.timeout(max(api_seconds_left(arrived), 0.001))


def database_unavailable_reason():
    """None while the database answers a ping within the API's deadline, else a one-line reason."""
    try:
        with api_database_deadline():
            mongoengine.get_db().command("ping")
    except PyMongoError as exc:
        return f"MongoDB unreachable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return None
