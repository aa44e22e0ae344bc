"""The queries behind the listing (docs/queries.md), as the API sends them, are answered from the intended index.

Each request goes through Django's test client to the real database process; a pymongo command listener
records the commands it sends, and each is explained on the same server (SecantusDB). The assertions:

- the page query scans the index docs/queries.md names for its filters, never the collection;
- that index returns the rows in the listing's order, so MongoDB needs no in-memory sort: its keys are the
  query's equality fields, then the sort's keys in the sort's directions (or all reversed), and the only
  ranges are on the sort's keys (MongoDB's rule; SecantusDB sorts every filtered result in memory whatever
  the index, see the last test, so its SORT stage says nothing about MongoDB);
- the count of a numbered page is made from an index or, unfiltered, from the collection's metadata;
- a keyset page sends no count, and looks its starting log up by `_id`;
- one log by id is one `find` of one row, and a numbered page one count and one `find` of its rows: no
  other round trip (a second find, getMore, killCursors).
"""

from datetime import timedelta

import mongoengine
import pytest
from pymongo import monitoring

from logs.events import ACTIONS
from logs.storage.documents import ActivityLog
from tests.support.builders import START, stored_log
from tests.support.query_plans import index_names

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No directory at:UserWarning")]

# Filters → the index docs/queries.md names for them.
FILTER_COMBINATIONS = {
    "": "newest_first",
    "userId=user-1": "user_newest_first",
    "action=send": "action_newest_first",
    "userId=user-1&action=send": "user_action_newest_first",
    "from=2026-11-01T00:10:00Z&to=2026-11-01T00:40:00Z": "newest_first",
    "userId=user-1&from=2026-11-01T00:10:00Z": "user_newest_first",
    "action=send&to=2026-11-01T00:40:00Z": "action_newest_first",
    "userId=user-1&action=send&from=2026-11-01T00:10:00Z&to=2026-11-01T00:40:00Z": "user_action_newest_first",
}
PAGES = {
    "numbered page 1": "limit=2",
    "numbered page 2": "limit=2&page=2",
    "keyset, newest end": "limit=2&after=",
    "keyset after a log": "limit=2&after={id}",
    "keyset before a log": "limit=2&before={id}",
}
COMMANDS = ("find", "aggregate", "count")


class CommandRecorder(monitoring.CommandListener):
    def __init__(self):
        self.commands = []
        self.round_trips = []  # every command's name, getMore and killCursors included

    def started(self, event):
        self.round_trips.append(event.command_name)
        if event.command_name in COMMANDS:
            self.commands.append(event.command)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.fixture
def recorded(mongodb_uri, settings):
    """The API's connection on this test's database, its commands recorded; 60 logs of three users."""
    from logs.storage.connection import connect_database

    settings.MONGODB_URI = mongodb_uri
    recorder = CommandRecorder()
    mongoengine.disconnect()
    # connect_database's options, plus the listener.
    mongoengine.connect(host=mongodb_uri, tz_aware=True, uuidRepresentation="standard", event_listeners=[recorder])
    ActivityLog.ensure_indexes()
    collection = ActivityLog._get_collection()
    collection.insert_many([stored_log(user_id=f"user-{i % 3}", action=ACTIONS[i // 3 % 3],
                                       at=START + timedelta(minutes=i)) for i in range(60)])
    yield recorder, collection
    connect_database()  # the API's own connection again, without the listener, as other API tests leave it


def key_patterns(stage):
    """The key patterns of the index scans in a winning plan's stage tree."""
    found = [stage["keyPattern"]] if stage.get("stage") == "IXSCAN" else []
    children = [stage["inputStage"]] if "inputStage" in stage else stage.get("inputStages", [])
    return found + [pattern for child in children for pattern in key_patterns(child)]


def returns_rows_in_sort_order(key_pattern, query, sort):
    """MongoDB's rule for an index scan that needs no in-memory sort: the index's keys are the query's
    equality fields (any order), then exactly the sort's keys in its directions or all reversed; and every
    other condition is a range on one of the sort's keys."""
    keys = list(key_pattern.items())
    equalities = {field for field, value in query.items() if not isinstance(value, dict)}
    ranges = {field for field, value in query.items() if isinstance(value, dict)}
    prefix, rest = keys[:len(equalities)], keys[len(equalities):]
    order = list(sort.items())
    return ({field for field, _ in prefix} == equalities
            and (rest == order or rest == [(field, -direction) for field, direction in order])
            and ranges <= set(sort))


def explain(collection, command):
    """The server's plan for a recorded `find` or `aggregate`, without running it."""
    kept = {key: value for key, value in command.items()
            if key in {"find", "filter", "sort", "skip", "limit", "projection", "aggregate", "pipeline", "cursor"}}
    return collection.database.command("explain", kept)


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("query, index", FILTER_COMBINATIONS.items())
def test_each_documented_query_is_answered_from_its_index_in_order(api_client, recorded, query, index, page):
    recorder, collection = recorded
    middle = collection.find_one({"timestamp": START + timedelta(minutes=30)})["_id"]
    url = f"/user-logs?{query}&{PAGES[page].format(id=middle)}"
    recorder.commands.clear()

    response = api_client.get(url)

    assert response.status_code == 200, response.content[:300]
    finds = [command for command in recorder.commands if "find" in command]
    counts = [command for command in recorder.commands if "find" not in command]
    lookups = [command for command in finds if "_id" in command.get("filter", {})]
    [page_query] = [command for command in finds if command not in lookups]

    plan = explain(collection, page_query)
    assert index_names(plan) == {index} and "COLLSCAN" not in str(plan), plan
    [key_pattern] = key_patterns(plan["queryPlanner"]["winningPlan"])
    assert returns_rows_in_sort_order(key_pattern, page_query["filter"], page_query["sort"]), (key_pattern, page_query)

    if page.startswith("keyset"):
        assert counts == []  # a keyset page computes no count
        assert len(lookups) == (0 if page == "keyset, newest end" else 1)
        for lookup in lookups:
            assert lookup["filter"] == {"_id": middle}
            assert index_names(explain(collection, lookup)) == {"_id_"}
    else:
        assert lookups == []
        [count] = counts
        if query:
            count_plan = explain(collection, count)
            assert index_names(count_plan) and "COLLSCAN" not in str(count_plan), count_plan
        else:
            # estimated_document_count: the collection's metadata, no query and no scan.
            assert "count" in count and not count.get("query"), count


def test_an_account_limited_to_its_own_logs_looks_its_starting_log_up_by_id_within_its_scope(db, recorded):
    from django.test import Client

    from logs.api.accounts import issue_api_token

    recorder, collection = recorded
    own = collection.find_one({"userId": "user-1"})["_id"]
    client = Client(headers={"Authorization": f"Token {issue_api_token(username='user-1').key}"})
    recorder.commands.clear()

    assert client.get(f"/user-logs?limit=2&after={own}").status_code == 200

    [lookup] = [command for command in recorder.commands if "_id" in command.get("filter", {})]
    assert lookup["filter"] == {"userId": "user-1", "_id": own}
    # MongoDB answers an `_id` equality from the `_id` index, the other condition checked on the one log.
    # SecantusDB's explain reports a scan for it, yet runs it from the userId index: tried one field at a time.


def test_secantusdb_sorts_every_filtered_page_in_memory_whatever_the_index(recorded):
    """Why the test above checks the sort with MongoDB's rule instead of the SORT stage: SecantusDB reports
    (and performs) a sort for a filtered query even where the index holds the rows in order. Once this fails,
    SecantusDB reads such pages in index order and the test above can assert the absence of a SORT stage."""
    _, collection = recorded

    plan = collection.database.command("explain", {"find": collection.name, "filter": {"userId": "user-1"},
                                                   "sort": {"timestamp": -1, "_id": -1}, "limit": 5})

    assert index_names(plan) == {"user_newest_first"} and plan["queryPlanner"]["winningPlan"]["stage"] == "SORT"


def test_a_log_by_id_is_one_find_of_one_row_by_its_id_unsorted(api_client, recorded):
    recorder, collection = recorded
    log_id = collection.find_one({"userId": "user-1"})["_id"]
    recorder.commands.clear()
    recorder.round_trips.clear()

    assert api_client.get(f"/user-logs/{log_id}").json()["id"] == log_id

    assert recorder.round_trips == ["find"]
    [find] = recorder.commands
    assert find["filter"] == {"_id": log_id} and find["limit"] == 1 and "sort" not in find


@pytest.mark.parametrize("limit, page, rows", [(7, 1, 7), (7, 3, 6), (2, 10, 2)])
def test_a_numbered_page_is_one_count_and_one_find_of_its_rows(api_client, recorded, limit, page, rows):
    """user-1 has 20 of the 60 logs: the third page of 7 holds the last 6."""
    recorder, _ = recorded
    recorder.commands.clear()
    recorder.round_trips.clear()

    body = api_client.get(f"/user-logs?userId=user-1&limit={limit}&page={page}").json()

    assert len(body["results"]) == rows and body["count"] == 20
    assert recorder.round_trips == ["aggregate", "find"]  # count_documents, then the page
    find = recorder.commands[-1]
    assert find["limit"] == rows and find.get("skip", 0) == (page - 1) * limit
