"""Reads of stored activity logs. Views and the benchmark call these; nothing else queries the document.

The listing's order is `NEWEST_FIRST`: `timestamp` descending, then `_id` descending to break ties, which
is how every index in `ActivityLog.meta` ends, so a page is read off an index in order. A keyset page
(docs/contract.md "API") starts at a log's place in that order and reads a range of the same index:
its cost is the page, wherever the place lies (docs/queries.md).
"""

import functools
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


class StoredLogs:
    """Stored logs matching a query, in an order: the API's queryset, read as the stored BSON dicts.

    It offers what DRF, django-filter and Django's Paginator ask of a queryset, with mongoengine's lookup
    names (`user_id`, `timestamp__gte`): `filter()`, `all()`, `order_by()`, `count()`, slices, iteration and
    `model`. The query is the pymongo filter that mongoengine's QuerySet would build from the same lookups
    (each value prepared by its ActivityLog field, each field by its stored name), and the reads are
    pymongo's on ActivityLog's collection. A mongoengine QuerySet clones itself whole for every one of those
    steps, which cost the API more CPU than the reads themselves
    (docs/decisions/0022-the-api-reads-through-its-own-queryset.md).

    Two conditions on one field are one condition: the same equality once, two bounds as one range with the
    tighter of two bounds of one kind. MongoDB reads an `$and` of them as the same range; SecantusDB
    answers such an `$and` with a collection scan instead of the index.
    """

    model = ActivityLog  # django-filter reads the queryset's model
    ordered = True  # so Django's Paginator does not warn: every StoredLogs has an order

    def __init__(self, query=None, order=NEWEST_FIRST):
        self.query = query or {}
        self.order = order
        self.sort = _sort(tuple(order))

    def filter(self, **lookups):
        """These logs narrowed by mongoengine-style lookups: `field` or `field__exact` (equality), `field__gte`,
        `__gt`, `__lte`, `__lt`; a field's value is prepared as mongoengine prepares it (a date string parsed)."""
        query = dict(self.query)
        for lookup, value in lookups.items():
            name, _, kind = lookup.partition("__")
            field = ActivityLog._fields.get(name)
            if field is None or kind not in _LOOKUPS:
                raise TypeError(f"StoredLogs.filter: {lookup!r} names no ActivityLog field with a lookup it knows")
            operator = _LOOKUPS[kind]
            # As mongoengine names it: None for equality (its `exact` is a regex, see _LOOKUPS), else the lookup.
            value = field.prepare_query_value(None if operator is None else kind, value)
            query = _with(query, field.db_field, value if operator is None else {operator: value})
        return StoredLogs(query, self.order)

    def all(self):
        return self

    def order_by(self, *names):
        """The same logs in the order of `names` (`-timestamp` descending), e.g. `OLDEST_FIRST`."""
        return StoredLogs(self.query, names)

    def count(self):
        """As mongoengine counts: from the collection's metadata when unfiltered, else `count_documents`."""
        collection = ActivityLog._get_collection()
        return collection.count_documents(self.query) if self.query else collection.estimated_document_count()

    def __getitem__(self, window):
        """The rows of a slice of the listing (`logs[start:stop]`), in order, as stored dicts."""
        if not isinstance(window, slice):
            raise TypeError("StoredLogs take a slice, e.g. logs[20:30]")
        start, stop = window.start or 0, window.stop
        if window.step is not None or start < 0 or stop is None or stop < start:
            raise TypeError("StoredLogs take a forward slice with an end, e.g. logs[20:30]")
        if stop == start:
            return []
        return list(self.cursor().skip(start).limit(stop - start))

    def __iter__(self):
        """Every row, in order (tests and tools; the API reads slices)."""
        return iter(self.cursor())

    def cursor(self):
        return ActivityLog._get_collection().find(self.query, sort=self.sort)

    def get(self, log_id, *, fields=None):
        """The row whose `_id` is `log_id` (an eventId as stored), or None; `fields`: only these keys and `_id`."""
        projection = None if fields is None else dict.fromkeys(fields, 1)
        return ActivityLog._get_collection().find_one(_with(self.query, "_id", log_id), projection)


# Django lookup name -> MongoDB operator (None: equality). Equality is `field: value`, which an index seeks;
# mongoengine writes `exact` as an anchored regex, which the server evaluates per index key.
_LOOKUPS = {"": None, "exact": None, "gte": "$gte", "gt": "$gt", "lte": "$lte", "lt": "$lt"}
_TIGHTER = {"$gte": max, "$gt": max, "$lte": min, "$lt": min}


@functools.cache
def _sort(order):
    """pymongo's sort for an order of field names (`-timestamp` descending), worked out once per order."""
    return [(ActivityLog._fields[name.lstrip("-")].db_field, -1 if name.startswith("-") else 1) for name in order]


def _is_range(condition):
    return isinstance(condition, dict) and bool(condition) and all(key in _TIGHTER for key in condition)


def _with(query, key, condition):
    """`query` and `key` meeting `condition`, as a new dict: merged into the one condition on `key` where
    possible (see `StoredLogs`), else an `$and` of the two."""
    if key not in query:
        return {**query, key: condition}
    present = query[key]
    if present == condition:
        return query
    if _is_range(present) and _is_range(condition):
        merged = dict(present)
        for operator, bound in condition.items():
            merged[operator] = _TIGHTER[operator](merged[operator], bound) if operator in merged else bound
        return {**query, key: merged}
    return {"$and": [query, {key: condition}]}


def activity_log_list(*, filters=None):
    """Logs matching `filters` (the caller's access scope, e.g. `{"user_id": ...}`), newest first, as the
    queryset the API's filter backend narrows and its paginator pages."""
    logs = StoredLogs()
    return logs.filter(**filters) if filters else logs


def activity_log_get(*, queryset, log_id, fields=None):
    """The log in `queryset` (from `activity_log_list`, perhaps narrowed) whose eventId, its `_id`, is
    `log_id`, or None; a malformed id finds nothing. `fields`: only these stored keys (and `_id`).

    Upper-case hex is the same UUID, so it finds the same log, as the consumer stores it lowercase. One
    `find_one`: the listing's order plays no part, so no server picks the order's index over `_id`'s.
    """
    try:
        event_id = parse_uuid(log_id)
    except ValueError:
        return None
    return queryset.get(event_id, fields=fields)


def activity_log_position(*, queryset, log_id):
    """The `Position` of the log `log_id` in `queryset` (the caller's scope), or None: one `_id` lookup."""
    log = activity_log_get(queryset=queryset, log_id=log_id, fields=("timestamp",))
    return None if log is None else Position(log["timestamp"], log["_id"])


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
        rows = ordered[:fetch]
        beyond = rows if position is None else [
            row for row in rows if position.comes_before(row, newest_first=newest_first)]
        if len(beyond) > limit or len(rows) < fetch:
            page = beyond[:limit]
            return (page if newest_first else page[::-1]), len(beyond) > limit
        fetch *= 2


def _narrowed_to(queryset, position, *, newest_first):
    """`queryset` from `position` on, ordered away from it: its `timestamp` range (the filters' `from`/`to`)
    tightened to the position's timestamp, as one condition (see `StoredLogs`)."""
    if newest_first:
        return queryset.filter(timestamp__lte=position.timestamp).order_by(*NEWEST_FIRST)
    # From one millisecond earlier: SecantusDB reads `$gte` after an equality as `$gt`, which would lose the
    # position's ties (tests/test_keyset_pages.py::test_secantusdb_reads_gte_after_an_equality_as_gt). The
    # rows of that millisecond sort before the position and are passed over like its ties, on any server.
    return queryset.filter(timestamp__gte=position.timestamp - timedelta(milliseconds=1)).order_by(*OLDEST_FIRST)
