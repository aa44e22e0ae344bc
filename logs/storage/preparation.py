"""What the consumer makes sure of before its first write: the layout, this version's indexes, retention."""

from django.conf import settings

from .documents import ActivityLog
from .layout import check_layout
from .retention import apply_retention


def prepare_storage():
    """Refuse a collection in the previous layout, then create what is missing.

    Raises CollectionUnusable (stop with its message) or a PyMongoError (the database is not there yet: retry).
    """
    collection = ActivityLog._get_collection()
    check_layout(collection)
    ActivityLog.ensure_indexes()
    apply_retention(collection, days=settings.ACTIVITY_LOG_RETENTION_DAYS)
