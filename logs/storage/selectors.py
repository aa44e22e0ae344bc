"""Reads of stored activity logs. Views and the benchmark call these; nothing else queries the document."""

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


def activity_log_get(*, queryset, log_id):
    """The log in `queryset` (from `activity_log_list`, perhaps narrowed) whose eventId, its `_id`, is
    `log_id`, or None; a malformed id finds nothing.

    Upper-case hex is the same UUID, so it finds the same log, as the consumer stores it lowercase. The
    listing's order is dropped: one `_id` is one log, and a sort would let a server pick the order's
    index over `_id`'s.
    """
    try:
        event_id = parse_uuid(log_id)
    except ValueError:
        return None
    return queryset.filter(event_id=event_id).order_by().first()
