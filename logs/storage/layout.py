"""Is the activity-log collection in the layout this version writes? One check for the consumer and the API.

The previous layout kept a generated ObjectId as `_id` and the event id in `eventId`, guarded by a
unique index on `eventId`. This version keys each log by its event id, so a collection still in the
old layout would silently lose exactly-once (replays would be stored again) and the API would not find
logs by event id. Both processes therefore refuse to start on it, with one line saying what to run.
"""

import sys

import pymongo
from bson import ObjectId
from pymongo.errors import PyMongoError

from .documents import LAYOUT_1_EVENT_ID_FIELD, ActivityLog

MIGRATE_COMMAND = "python manage.py migrate_activity_logs"


class CollectionUnusable(RuntimeError):
    """The collection cannot be written or served as it is; the message says what an operator does."""


class LayoutOutdated(CollectionUnusable):
    """The collection holds logs in the previous layout; `migrate_activity_logs` upgrades it."""


def previous_layout_reason(collection):
    """None when `collection` is in this version's layout (or empty), else a one-line reason.

    Two constant-time probes, so both processes can afford it at every start: the previous layout's
    unique index (present from the first start of the previous consumer until the migration renames
    the upgraded copy into place), and the `_id` type of one stored log.
    """
    for index in collection.list_indexes():
        if dict(index["key"]) == {LAYOUT_1_EVENT_ID_FIELD: 1} and index.get("unique"):
            return (f"collection {collection.name!r} is in the previous layout (unique index {index['name']!r} on "
                    f"eventId); stop its consumers and run `{MIGRATE_COMMAND}` first")
    sample = collection.find_one({}, projection={"_id": 1})
    if sample is not None and isinstance(sample["_id"], ObjectId):
        return (f"collection {collection.name!r} holds logs in the previous layout (ObjectId _id); "
                f"run `{MIGRATE_COMMAND}` first")
    return None


def check_layout(collection=None):
    """Raise LayoutOutdated unless the activity-log collection is in this version's layout."""
    if collection is None:
        collection = ActivityLog._get_collection()
    reason = previous_layout_reason(collection)
    if reason is not None:
        raise LayoutOutdated(reason)


def serving_layout_reason():
    """For /readyz: None while the collection is in this version's layout, else why it cannot be served."""
    try:
        return previous_layout_reason(ActivityLog._get_collection())
    except PyMongoError as exc:
        return f"MongoDB layout check failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def refuse_to_serve_outdated_layout(*, timeout_seconds=2.0):
    """At API start (the WSGI entry): exit with one line when the database holds the previous layout.

    Exit status 3 is gunicorn's "worker failed to boot", which stops the whole server instead of
    restarting the worker in a loop. A database that does not answer within `timeout_seconds` is
    not waited for: the API starts, and /readyz answers 503 until the database is there and upgraded.
    """
    try:
        with pymongo.timeout(timeout_seconds):
            reason = previous_layout_reason(ActivityLog._get_collection())
    except PyMongoError:
        return
    if reason is not None:
        print(f"refusing to serve the API: {reason}", file=sys.stderr, flush=True)
        raise SystemExit(3)
