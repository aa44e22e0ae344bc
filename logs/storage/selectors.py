"""Reads of stored activity logs. Views and the benchmark call these; nothing else queries the document.

The listing's order is `NEWEST_FIRST`: `timestamp` descending, then `_id` descending to break ties, which
is how every index in `ActivityLog.meta` ends, so a page is read off an index in order. A keyset page
(docs/contract.md "API") starts at a log's place in that order and reads a range of the same index:
its cost is the page, wherever the place lies (docs/queries.md).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..events import parse_uuid
from .documents import ActivityLog

NEWEST_FIRST = ("-timestamp", "-event_id")
OLDEST_FIRST = ("timestamp", "event_id")


@dataclass(frozen=True)
class Position:
    """A log's place in the listing: its timestamp and id, the two keys the order sorts by."""

    timestamp: datetime
    log_id: str

    def comes_before(self, row, *, newest_first):
        """Whether this place comes before the stored `row` when reading newest first (or oldest first)."""
        if newest_first:
            return (row["timestamp"], row["_id"]) < (self.timestamp, self.log_id)
        return (row["timestamp"], row["_id"]) > (self.timestamp, self.log_id)


def activity_log_list(*, filters=None):
    """Logs matching `filters` (the caller's access scope, e.g. `{"user_id": ...}`), newest first, as a
    queryset the API's filter backend narrows and its paginator pages.

    Rows come back as the stored BSON dicts (`as_pymongo`): building a mongoengine Document per row
    costs more than reading a page, and the serializer only needs the stored values.
    """
    return ActivityLog.objects(**(filters or {})).order_by(*NEWEST_FIRST).as_pymongo()


def activity_log_get(*, queryset, log_id, fields=None):
    """The log in `queryset` (from `activity_log_list`, perhaps narrowed) whose eventId, its `_id`, is
    `log_id`, or None; a malformed id finds nothing. `fields`: only these stored keys (and `_id`).

    Upper-case hex is the same UUID, so it finds the same log, as the consumer stores it lowercase. The
    listing's order is dropped: one `_id` is one log, and a sort would let a server pick the order's
    index over `_id`'s.

    One `find_one` with the query mongoengine built for `queryset` (see `StoredRows`).
    """
    try:
        event_id = parse_uuid(log_id)
    except ValueError:
        return None
    projection = None if fields is None else dict.fromkeys(fields, 1)
    return _collection(queryset).find_one(_with(_query(queryset), {"_id": event_id}), projection)


def activity_log_position(*, queryset, log_id):
    """The `Position` of the log `log_id` in `queryset` (the caller's scope), or None: one `_id` lookup."""
    log = activity_log_get(queryset=queryset, log_id=log_id, fields=("timestamp",))
    return None if log is None else Position(log["timestamp"], log["_id"])


class StoredRows:
    """The rows of a mongoengine queryset (from `activity_log_list`, narrowed by the filters) read by pymongo
    alone: `count()` and a slice are one database command each, as mongoengine would send them.

    The queryset stays what every DRF and django-filter hook sees and narrows; only the read leaves it.
    Reading through mongoengine clones the queryset and builds its cursor through several layers per read,
    which cost more CPU than the read itself. The query and the order are mongoengine's own, taken from the
    queryset's private `_query` and `_ordering`: tests/test_keyset_pages.py
    `test_stored_rows_read_what_mongoengine_would` fails if either changes.
    """

    def __init__(self, queryset):
        self.queryset = queryset

    def count(self):
        """As mongoengine counts: from the collection's metadata when unfiltered, else `count_documents`."""
        query, collection = _query(self.queryset), _collection(self.queryset)
        return collection.count_documents(query) if query else collection.estimated_document_count()

    def __getitem__(self, window):
        """The rows of a slice of the listing (`rows[start:stop]`), in the queryset's order, as stored dicts."""
        start, stop = window.start or 0, window.stop
        if window.step is not None or start < 0 or stop is None or stop < start:
            raise TypeError("StoredRows take a forward slice with an end, e.g. rows[20:30]")
        if stop == start:
            return []
        cursor = _collection(self.queryset).find(_query(self.queryset))
        if self.queryset._ordering:
            cursor = cursor.sort(self.queryset._ordering)
        return list(cursor.skip(start).limit(stop - start))


def _collection(queryset):
    return queryset._document._get_collection()


def _query(queryset):
    # mongoengine keeps the query it will send in `QuerySet._query`, a private name (see `StoredRows`).
    return queryset._query


def _with(query, condition):
    """`query` and `condition` together, without changing `query` (mongoengine's own dict)."""
    if any(key in query for key in condition):
        return {"$and": [query, condition]}
    return {**query, **condition}


def activity_log_keyset_page(*, queryset, position=None, limit, newest_first=True):
    """Up to `limit` rows of `queryset` (filtered, from `activity_log_list`) beyond `position` in the
    listing's order (`newest_first`: older logs; else newer ones, returned newest first all the same),
    and whether more lie beyond them. No position: the page at the newest end.

    One range of the index: the position's timestamp bounds the query, so the server starts reading at
    the position; the rows that share its timestamp but sort before it (a tie, or the position's own
    log) are passed over here. Asking `limit + 2` rows covers the usual case (the position's own log
    and the one row that tells whether there are more) in one query; every further tie doubles it.
    """
    ordered = queryset if position is None else _narrowed_to(queryset, position, newest_first=newest_first)
    fetch = limit + 1 if position is None else limit + 2
    while True:
        rows = StoredRows(ordered)[:fetch]
        beyond = rows if position is None else [
            row for row in rows if position.comes_before(row, newest_first=newest_first)]
        if len(beyond) > limit or len(rows) < fetch:
            page = beyond[:limit]
            return (page if newest_first else page[::-1]), len(beyond) > limit
        fetch *= 2


def _narrowed_to(queryset, position, *, newest_first):
    """`queryset` from `position` on, ordered away from it: its `timestamp` condition (the filters' `from`/`to`)
    tightened to the position's timestamp.

    mongoengine writes a second condition with the same operator on one field as an `$and` of the two, which
    MongoDB reads as one range but some servers (SecantusDB) answer with a collection scan; so the bound is
    merged into the one `timestamp` condition of the query mongoengine built.
    """
    if newest_first:
        operator, bound, tighter = "$lte", position.timestamp, min
    else:
        # From one millisecond earlier: SecantusDB reads `$gte` after an equality as `$gt`, which would lose the
        # position's ties (tests/test_keyset_pages.py::test_secantusdb_reads_gte_after_an_equality_as_gt). The
        # rows of that millisecond sort before the position and are passed over like its ties, on any server.
        operator, bound, tighter = "$gte", position.timestamp - timedelta(milliseconds=1), max
    # tests/test_keyset_pages.py::test_mongoengine_writes_a_second_bound_on_one_field_as_an_and fails if
    # mongoengine writes a second bound otherwise.
    query = dict(_query(queryset))
    condition = query.get("timestamp")
    if condition is None:
        query["timestamp"] = {operator: bound}
    elif isinstance(condition, dict) and all(key.startswith("$") for key in condition):
        query["timestamp"] = {**condition, operator: tighter(condition[operator], bound) if operator in condition
                              else bound}
    else:
        query = {"$and": [query, {"timestamp": {operator: bound}}]}
    order = NEWEST_FIRST if newest_first else OLDEST_FIRST
    return ActivityLog.objects(__raw__=query).order_by(*order).as_pymongo()
