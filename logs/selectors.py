"""Reads of stored activity logs. Views and the benchmark call these; nothing else queries the document."""

from bson import ObjectId

from .documents import ActivityLog

# Every index in `ActivityLog.meta` ends in this order, so a page is read off an index, never sorted.
NEWEST_FIRST = ("-timestamp", "-id")


def activity_log_list(*, filters=None):
    """Logs matching `filters` (document field lookups such as `user_id` or `timestamp__gte`), newest first.

    Rows come back as the stored BSON dicts (`as_pymongo`): building a mongoengine Document per row
    costs more than reading a page, and the serializer only needs the stored values.
    """
    return ActivityLog.objects(**(filters or {})).order_by(*NEWEST_FIRST).as_pymongo()


def activity_log_get(*, log_id, filters=None):
    """The stored log with this document id that also matches `filters`, or None; an id that is not
    an ObjectId finds nothing."""
    if not isinstance(log_id, str) or not ObjectId.is_valid(log_id):
        return None
    return ActivityLog.objects(id=ObjectId(log_id), **(filters or {})).as_pymongo().first()
