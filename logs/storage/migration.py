"""Upgrade a collection written by the previous version to this version's layout (`migrate_activity_logs`).

Copy, then swap:
1. every log still in the old collection is rebuilt with this version's `ActivityLog.mongo_document`
   and inserted into a side collection `<name>_upgrade`, in `_id` order, a batch at a time;
2. after each batch the last copied `_id` is recorded in `<name>_upgrade_progress`, so a killed run
   resumes after it; a batch copied twice is harmless, because the copies are keyed by event id and a
   second copy is a duplicate-key error, skipped as the consumer skips a replay;
3. once the copy holds as many logs as the old collection, it gets this version's indexes and is
   renamed over the old collection in one step (`renameCollection`, dropTarget), which removes the old
   collection and with it the previous layout's unique index on `eventId`.

Why not in place: while an old document is still there, the unique `eventId` index rejects its
upgraded copy, so an in-place upgrade would have to drop that index first and run without the
exactly-once guard until it finished. Copying leaves the old collection untouched until the swap, so
an interrupted upgrade changes nothing a reader sees, and giving up is dropping the side collection.
The cost is room for a second copy of the logs while it runs.
"""

import itertools
from dataclasses import dataclass

from mongoengine.context_managers import switch_collection
from pymongo.errors import BulkWriteError

from ..events import ActivityEvent
from .documents import DUPLICATE_KEY, LAYOUT_1_EVENT_ID_FIELD, ActivityLog
from .layout import previous_layout_reason

# Layout 1's stored field names (its `ActivityLog` db_fields), frozen here because this version's
# document no longer defines all of them.
_PREVIOUS_EVENT_FIELDS = {
    LAYOUT_1_EVENT_ID_FIELD: "event_id", "userId": "user_id", "action": "action", "timestamp": "timestamp",
    "amountCents": "amount_cents", "currency": "currency", "counterpartyId": "counterparty_id",
    "transferId": "transfer_id", "balanceCents": "balance_cents",
}


class MigrationFailed(RuntimeError):
    """The upgrade stopped without swapping; the old collection is untouched and a re-run resumes."""


@dataclass(frozen=True)
class Progress:
    copied: int  # logs copied so far, over every run
    total: int  # logs in the old collection when this run started
    resumed_from: int  # logs an earlier, interrupted run had already copied


def upgrade_collections(database, name):
    """The side collection the copy goes to, and the one that records how far it got."""
    return database[f"{name}_upgrade"], database[f"{name}_upgrade_progress"]


def upgraded_document(previous):
    """This version's document for one log stored in the previous layout; MigrationFailed if it is not one."""
    try:
        event = ActivityEvent(**{attribute: previous.get(field) for field, attribute in _PREVIOUS_EVENT_FIELDS.items()})
        return ActivityLog.mongo_document(event, partition=previous.get("kafkaPartition"),
                                          offset=previous.get("kafkaOffset"), ingested_at=previous.get("ingestedAt"))
    except (TypeError, ValueError) as exc:
        raise MigrationFailed(f"stored log {previous.get('_id')!r} cannot be upgraded: {exc}") from exc


def copy_batch(target, documents):
    """Insert the upgraded documents; returns how many were new (the others were copied before)."""
    try:
        return len(target.insert_many(documents, ordered=False).inserted_ids)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        other = [error for error in errors if error.get("code") != DUPLICATE_KEY]
        if other or exc.details.get("writeConcernErrors"):
            first = (other or exc.details["writeConcernErrors"])[0]
            raise MigrationFailed(f"copy failed: code {first.get('code')}: {first.get('errmsg')}") from exc
        return exc.details.get("nInserted", 0)


def copy_previous_logs(source, target, progress, *, batch_size, on_progress, start_after=None):
    """Copy every old log after `start_after` (an old `_id`), recording the position after each batch."""
    state = progress.find_one({"_id": "position"}) or {"copied": 0}
    copied, resumed_from = state["copied"], state["copied"]
    total = source.estimated_document_count()
    # One cursor in `_id` order for the whole pass: a fresh sorted query per batch would make a server
    # that sorts before it limits (SecantusDB) read the rest of the collection every time.
    remaining = source.find({"_id": {"$gt": start_after}} if start_after is not None else {},
                            sort=[("_id", 1)], batch_size=batch_size)
    while batch := list(itertools.islice(remaining, batch_size)):
        copy_batch(target, [upgraded_document(previous) for previous in batch])
        copied += len(batch)
        progress.replace_one({"_id": "position"}, {"_id": "position", "after": batch[-1]["_id"], "copied": copied},
                             upsert=True)
        on_progress(Progress(copied=copied, total=total, resumed_from=resumed_from))
    return copied


def create_current_indexes(collection):
    """This version's indexes on `collection`, created exactly as the consumer's `ensure_indexes` creates
    them (same options too), so that the consumer finds them as its own after the swap."""
    with switch_collection(ActivityLog, collection.name) as upgraded:
        upgraded.ensure_indexes()


def migrate_activity_logs(*, batch_size=1000, on_progress=lambda progress: None):
    """Upgrade the activity-log collection (MONGODB_URI's) to this version's layout; returns a one-line summary.

    Idempotent (a collection already upgraded is left as it is) and resumable (see the module docstring).
    """
    database = ActivityLog._get_db()
    name = ActivityLog._get_collection_name()
    source = database[name]
    target, progress = upgrade_collections(database, name)
    if name in database.list_collection_names() and previous_layout_reason(source) is None:
        progress.drop()  # left behind by a run killed between the swap and its clean-up
        return f"{name} is already in the current layout; nothing to do"
    if name not in database.list_collection_names():
        return f"{name} does not exist yet; nothing to do"
    position = (progress.find_one({"_id": "position"}) or {}).get("after")
    copy_previous_logs(source, target, progress, batch_size=batch_size, on_progress=on_progress,
                       start_after=position)
    expected, copied = source.count_documents({}), target.count_documents({})
    if copied < expected:
        # Logs written behind the copy's position (a consumer of the previous version still running,
        # whose ObjectIds are not in insertion order): one more pass from the start catches them.
        copy_previous_logs(source, target, progress, batch_size=batch_size, on_progress=on_progress)
        copied = target.count_documents({})
    if copied != expected:
        raise MigrationFailed(
            f"{name} changed while it was being upgraded ({expected:,} logs, {copied:,} copied): stop every "
            "consumer of the previous version and run the command again")
    create_current_indexes(target)
    target.rename(name, dropTarget=True)
    progress.drop()
    return (f"upgraded {copied:,} logs in {name} to the current layout (the unique eventId index is gone with the "
            "old copy)")
