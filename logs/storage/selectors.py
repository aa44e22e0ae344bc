"""Reads of stored activity logs. Views and the benchmark call these; nothing else queries the document."""

from mongoengine.queryset import transform

from ..events import parse_uuid
from .documents import ActivityLog

# Every index in `ActivityLog.meta` ends in this order, so a page is read off an index, never sorted.
NEWEST_FIRST = ("-timestamp", "-event_id")


def activity_log_list(*, filters=None):
    """Logs matching `filters` (the caller's access scope, e.g. `{"user_id": ...}`), newest first, as a
    queryset the API's filter backend narrows and its paginator pages.

    Rows come back as the stored BSON dicts (`as_pymongo`): building a mongoengine Document per row
    costs more than reading a page, and the serializer only needs the stored values.
    """
    return ActivityLog.objects(**(filters or {})).order_by(*NEWEST_FIRST).as_pymongo()


def activity_log_get(*, log_id, filters=None):
    """The stored log whose eventId (its `_id`) is `log_id` and that also matches `filters`, or None;
    a malformed id finds nothing.

    Upper-case hex is the same UUID, so it finds the same log, as the consumer stores it lowercase.
    """
    try:
        event_id = parse_uuid(log_id)
    except ValueError:
        return None
    # mongoengine's own translation of the filter to a query, and one find_one: `.as_pymongo().first()`
    # clones the queryset and its cursor four times on the way, which cost more than the read itself.
    return ActivityLog._get_collection().find_one(transform.query(ActivityLog, event_id=event_id, **(filters or {})))
