"""`ACTIVITY_LOG_RETENTION_DAYS`: logs older than that are deleted by MongoDB itself, through a TTL index.

The TTL index is on `timestamp`, when the activity happened, not on `ingestedAt`: retention is a promise
about the age of the activity kept ("one year of activity"), and a backfill of old events must not keep
them for another full period just because they arrived late. The price is that an event already older
than the period when it arrives is stored and then removed by the next TTL pass (MongoDB runs it every
60 s), and stored again if it is replayed.
"""

from pymongo.errors import OperationFailure

from .layout import CollectionUnusable

RETENTION_INDEX_NAME = "retention_ttl"
SECONDS_PER_DAY = 24 * 60 * 60


class RetentionIndexConflict(CollectionUnusable):
    """An index the retention index cannot coexist with; says which, so an operator can drop it."""


def apply_retention(collection, *, days):
    """Create, change or drop the TTL index so that it matches `days` (0 or None: keep logs for ever).

    Called at every consumer start, so changing the setting and restarting the consumers is all it takes;
    a changed period is applied with `collMod`, without rebuilding the index.
    """
    existing = {index["name"]: index for index in collection.list_indexes()}.get(RETENTION_INDEX_NAME)
    if not days:
        if existing is not None:
            collection.drop_index(RETENTION_INDEX_NAME)
        return
    seconds = days * SECONDS_PER_DAY
    if existing is None:
        try:
            collection.create_index([("timestamp", 1)], name=RETENTION_INDEX_NAME, expireAfterSeconds=seconds)
        except OperationFailure as exc:
            raise RetentionIndexConflict(
                f"cannot create the retention index on {collection.name}.timestamp: {exc.details.get('errmsg', exc)}"
            ) from None
    elif existing.get("expireAfterSeconds") != seconds:
        collection.database.command("collMod", collection.name,
                                    index={"name": RETENTION_INDEX_NAME, "expireAfterSeconds": seconds})
