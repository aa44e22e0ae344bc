"""Keyset pages of `/user-logs` (docs/contract.md "API"): `after`/`before` a log's id, no count, exact walks;
and the ASCII-digits rule for `page` and `limit`. Django's test client against the real database process."""

import threading
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from logs.events import ACTIONS
from tests.support.builders import START, stored_log

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No directory at:UserWarning")]

WALK_DEADLINE_SECONDS = 60


# --- helpers of this module (shared ones: tests/support/) -----------------------------------------------

def store(collection, documents):
    collection.insert_many(documents)
    return documents


def newest_first_ids(documents):
    return [document["_id"] for document in sorted(documents, key=lambda d: (d["timestamp"], d["_id"]), reverse=True)]


def get(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.content[:500])
    return response.json()


def walk(client, url, *, link="next", deadline=WALK_DEADLINE_SECONDS):
    """Every page from `url` on, following `link` until it is null; the pages' bodies."""
    pages, started = [get(client, url)], datetime.now()
    while pages[-1][link]:
        assert (datetime.now() - started).total_seconds() < deadline, f"walk still going after {len(pages)} pages"
        pages.append(get(client, relative(pages[-1][link])))
    return pages


def relative(link):
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def link_params(link):
    return {name: values[0] for name, values in parse_qs(urlsplit(link).query, keep_blank_values=True).items()}


def result_ids(pages):
    return [item["id"] for page in pages for item in page["results"]]


@pytest.fixture
def client(api_client):
    """An account that reads every user's logs."""
    return api_client


@pytest.fixture
def tied_logs(api_collection):
    """40 logs, three users and three actions, four per millisecond: ties that only the id orders."""
    return store(api_collection, [stored_log(user_id=f"user-{i % 3}", action=ACTIONS[i % 3],
                                              at=START + timedelta(milliseconds=i // 4)) for i in range(40)])


# --- walks ---------------------------------------------------------------------------------------------

FILTERS = {
    "": lambda d: True,
    "userId=user-1": lambda d: d["userId"] == "user-1",
    "action=send": lambda d: d["action"] == "send",
    "userId=user-1&action=receive": lambda d: d["userId"] == "user-1" and d["action"] == "receive",
    "from=2026-11-01T00:00:00.002Z&to=2026-11-01T00:00:00.007Z":
        lambda d: START + timedelta(milliseconds=2) <= d["timestamp"].replace(tzinfo=timezone.utc)
        <= START + timedelta(milliseconds=7),
    "action=send&to=2026-11-01T00:00:00.006Z":
        lambda d: d["action"] == "send"
        and d["timestamp"].replace(tzinfo=timezone.utc) <= START + timedelta(milliseconds=6),
}


@pytest.mark.parametrize("query", FILTERS)
@pytest.mark.parametrize("start", ["numbered first page", "after="])
def test_following_next_from_the_first_page_returns_every_log_once_in_the_listing_order(client, tied_logs, query,
                                                                                       start):
    first = f"/user-logs?{query}&limit=3" + ("&after=" if start == "after=" else "")

    pages = walk(client, first)

    expected = newest_first_ids([d for d in tied_logs if FILTERS[query](d)])
    assert result_ids(pages) == expected
    assert result_ids(pages) == [item["id"] for item in get(client, f"/user-logs?{query}&limit=100")["results"]]
    assert all(len(page["results"]) == 3 for page in pages[:-1]) and pages[-1]["next"] is None
    assert all(link_params(page["next"]).get("limit") == "3" for page in pages[:-1])
    if pages[-1]["previous"]:  # and back: `previous` from the last page returns the pages before it
        back = walk(client, relative(pages[-1]["previous"]), link="previous")
        assert result_ids([*reversed(back), pages[-1]]) == expected


def test_a_numbered_page_keeps_its_body_and_its_next_link_continues_by_keyset(client, tied_logs):
    body = get(client, "/user-logs?action=send&limit=5&page=2")

    assert list(body) == ["count", "next", "previous", "page", "limit", "totalPages", "results"]
    assert body["count"] == 14 and body["page"] == 2 and body["totalPages"] == 3
    assert link_params(body["next"]) == {"action": "send", "limit": "5", "after": body["results"][-1]["id"]}
    assert link_params(body["previous"]) == {"action": "send", "limit": "5"}  # page 1, a page-number link as before
    following = get(client, relative(body["next"]))
    assert result_ids([following]) == result_ids([get(client, "/user-logs?action=send&limit=5&page=3")])


def test_keyset_pages_carry_no_count(client, tied_logs, api_collection):
    after = newest_first_ids(tied_logs)[4]

    body = get(client, f"/user-logs?after={after}&limit=5")

    assert list(body) == ["next", "previous", "limit", "results"] and body["limit"] == 5
    assert result_ids([body]) == newest_first_ids(tied_logs)[5:10]


def test_previous_links_walk_back_to_the_newest_log(client, tied_logs):
    ids = newest_first_ids(tied_logs)

    pages = walk(client, f"/user-logs?before={ids[-1]}&limit=6", link="previous")

    assert [item for page in reversed(pages) for item in result_ids([page])] == ids[:-1]
    assert link_params(pages[0]["next"]) == {"limit": "6", "after": ids[-2]}
    assert pages[-1]["previous"] is None and len(pages[-1]["results"]) == 3


def test_the_ends_of_a_walk(client, tied_logs):
    ids = newest_first_ids(tied_logs)

    newest = get(client, "/user-logs?limit=5&after=")
    oldest = get(client, f"/user-logs?limit=5&after={ids[-1]}")
    last = get(client, f"/user-logs?limit=5&after={ids[-6]}")

    assert newest["previous"] is None and result_ids([newest]) == ids[:5]
    assert oldest == {"next": None, "previous": None, "limit": 5, "results": []}
    assert result_ids([last]) == ids[-5:] and last["next"] is None
    assert link_params(last["previous"])["before"] == ids[-5]


def test_logs_stored_during_a_walk_never_appear_in_it(client, api_collection):
    """Once the first page is read, a writer stores newer logs (as the consumer does) for as long as the
    walk runs; the walk returns exactly the logs of the listing its first page began, each once, in order."""
    before = store(api_collection, [stored_log(at=START + timedelta(seconds=i // 2)) for i in range(60)])
    walking, stored_during = threading.Event(), []

    def writer():
        moment = START + timedelta(days=1)
        while not walking.is_set():
            moment += timedelta(milliseconds=1)
            stored_during.extend(store(api_collection, [stored_log(at=moment), stored_log(at=moment)]))

    first = get(client, "/user-logs?userId=user-1&limit=7")
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = datetime.now() + timedelta(seconds=WALK_DEADLINE_SECONDS)
        while not stored_during:
            assert datetime.now() < deadline, "the writer stored nothing"
        rest = walk(client, relative(first["next"]))
    finally:
        walking.set()
        thread.join()

    assert len(stored_during) >= 2 and get(client, "/user-logs?userId=user-1&limit=1")["count"] > len(before)
    assert result_ids([first, *rest]) == newest_first_ids(before)


def test_a_log_stored_behind_the_walk_appears_once_in_its_place(client, api_collection):
    documents = store(api_collection, [stored_log(at=START + timedelta(minutes=i)) for i in range(20)])

    first = get(client, "/user-logs?limit=5")
    # An event that arrived late: older than the walk's position.
    [late] = store(api_collection, [stored_log(at=START + timedelta(minutes=2, seconds=30))])
    rest = walk(client, relative(first["next"]))

    assert result_ids([first, *rest]) == newest_first_ids([*documents, late])


# --- refusals ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("query, field", [
    ("after={id}&page=2", "after"),
    ("before={id}&page=1", "before"),
    ("after={id}&before={id}", "before"),
    ("after=not-a-uuid", "after"),
    ("after=%7B%22%24gt%22%3A%22%22%7D", "after"),  # {"$gt":""}
    ("after={unknown}", "after"),
    ("before={unknown}", "before"),
    ("before=", "before"),
    ("after={id}&after={id}", "after"),
    ("after={id}&limit=0", "limit"),
    ("after={id}&limit=%D9%A1%D9%A0", "limit"),  # Arabic-Indic digits one, zero
])
def test_invalid_keyset_requests_are_400_naming_the_field(client, tied_logs, query, field):
    url = "/user-logs?" + query.format(id=tied_logs[0]["_id"], unknown=uuid.uuid4())

    body = get(client, url, 400)

    assert field in body and all(isinstance(message, str) for message in body[field]), body


def test_an_upper_case_id_names_the_same_log(client, tied_logs):
    log_id = newest_first_ids(tied_logs)[3]

    upper_case = get(client, f"/user-logs?limit=4&after={log_id.upper()}")
    assert upper_case == get(client, f"/user-logs?limit=4&after={log_id}")


def test_an_account_limited_to_its_own_logs_cannot_start_at_another_users_log(db, api_collection):
    from logs.api.accounts import issue_api_token

    own, others = (store(api_collection, [stored_log(user_id=user, at=START + timedelta(minutes=i)) for i in range(5)])
                   for user in ("user-1", "user-2"))
    client = Client(headers={"Authorization": f"Token {issue_api_token(username='user-1').key}"})

    for query in ("after={id}", "userId=user-1&after={id}", "before={id}", "userId=user-1&before={id}"):
        another_users = client.get("/user-logs?" + query.format(id=others[2]["_id"]))
        unknown = client.get("/user-logs?" + query.format(id=uuid.uuid4()))
        field = "after" if "after" in query else "before"
        assert another_users.status_code == unknown.status_code == 400, query
        assert another_users.json() == unknown.json() and list(unknown.json()) == [field]
    assert result_ids([get(client, f"/user-logs?after={own[3]['_id']}")]) == newest_first_ids(own)[2:]


# --- numbers are ASCII digits --------------------------------------------------------------------------

@pytest.mark.parametrize("query, field", [
    ("page=%EF%BC%91", "page"),  # fullwidth one
    ("limit=%D9%A1%D9%A0", "limit"),  # Arabic-Indic one, zero
    ("limit=%E0%A5%A7", "limit"),  # Devanagari one
    ("page=2.0", "page"),
    ("page=%2B2", "page"),  # +2
    ("limit=%205", "limit"),  # a leading space
    ("page=" + "9" * 5000, "page"),
])
def test_page_and_limit_are_ascii_digits_only(client, tied_logs, query, field):
    body = get(client, f"/user-logs?{query}", 400)

    assert list(body) == [field] and all(isinstance(message, str) for message in body[field])


def test_ascii_digits_with_leading_zeros_are_numbers(client, tied_logs):
    assert get(client, "/user-logs?page=02&limit=05")["results"] == get(client, "/user-logs?page=2&limit=5")["results"]


# --- the browsable API and the schema ------------------------------------------------------------------

def test_the_browsable_api_offers_keyset_links_and_a_field_for_after(client, tied_logs):
    log_id = newest_first_ids(tied_logs)[4]

    numbered = client.get("/user-logs?action=send&limit=5", HTTP_ACCEPT="text/html").content.decode()
    keyset = client.get(f"/user-logs?action=send&limit=5&after={log_id}", HTTP_ACCEPT="text/html").content.decode()

    for page in (numbered, keyset):
        assert 'name="after"' in page and '<input type="hidden" name="action" value="send">' in page
    assert "after=" in numbered and 'rel="next"' in keyset and 'rel="prev"' in keyset


def test_the_openapi_schema_documents_keyset_pages(client):
    from drf_spectacular.validation import validate_schema

    schema = get(client, "/api/schema/?format=json")
    validate_schema(schema)

    parameters = {parameter["name"]: parameter for parameter in schema["paths"]["/user-logs/"]["get"]["parameters"]}
    assert parameters["after"]["schema"] == parameters["before"]["schema"] == {"type": "string", "format": "uuid"}
    numbered, keyset = schema["components"]["schemas"]["PaginatedActivityLogList"]["oneOf"]
    assert numbered["required"] == ["count", "next", "previous", "page", "limit", "totalPages", "results"]
    assert keyset["required"] == ["next", "previous", "limit", "results"]


# --- what the selector bridges -------------------------------------------------------------------------

def test_a_second_condition_on_a_field_joins_the_first_as_one_condition():
    """How the keyset bound meets the filters' own `timestamp` range (selectors._narrowed_to), and a scope's
    `userId` the query string's: one condition per field, where mongoengine would write an `$and`."""
    from logs.storage.selectors import activity_log_list

    earlier, later = START - timedelta(seconds=5), START + timedelta(seconds=5)
    logs = activity_log_list()
    assert logs.filter(timestamp__lte=START).filter(timestamp__lte=earlier).query == {"timestamp": {"$lte": earlier}}
    assert logs.filter(timestamp__lte=earlier).filter(timestamp__lte=START).query == {"timestamp": {"$lte": earlier}}
    assert logs.filter(timestamp__gte=earlier, timestamp__lte=later).filter(timestamp__gte=START).query == \
        {"timestamp": {"$gte": START, "$lte": later}}
    assert logs.filter(timestamp__gt=earlier).filter(timestamp__lt=later).query == \
        {"timestamp": {"$gt": earlier, "$lt": later}}
    assert logs.filter(user_id="user-1").filter(user_id__exact="user-1").query == {"userId": "user-1"}
    assert logs.filter(user_id="user-1").filter(user_id="user-2").query == \
        {"$and": [{"userId": "user-1"}, {"userId": "user-2"}]}
    assert logs.filter(user_id="user-1").filter(timestamp__lte=START).query == \
        {"userId": "user-1", "timestamp": {"$lte": START}}
    assert logs.query == {}  # each filter makes new logs; these stay unfiltered
    for unknown in ("user_id__startswith", "userId", "no_such_field__gte"):
        with pytest.raises(TypeError, match="names no ActivityLog field"):
            logs.filter(**{unknown: "x"})


def test_the_stored_logs_read_what_mongoengine_reads(api_collection):
    """The API's queryset (`selectors.StoredLogs`) builds its query and order from mongoengine's lookups and the
    document's fields: the same rows in the same order and the same counts as mongoengine's own queryset for
    the same lookups, and one log by id (upper-case hex too) as mongoengine finds it."""
    from logs.storage.documents import ActivityLog
    from logs.storage.selectors import (
        NEWEST_FIRST,
        OLDEST_FIRST,
        activity_log_get,
        activity_log_list,
        activity_log_position,
    )

    logs = store(api_collection, [
        stored_log(user_id=f"user-{n % 3}", action=ACTIONS[n % len(ACTIONS)],
                   at=START + timedelta(seconds=n // 2)) for n in range(30)])  # ties: two logs per second
    window = {"timestamp__gte": START + timedelta(seconds=3), "timestamp__lte": START + timedelta(seconds=9)}
    cases = [
        ({}, NEWEST_FIRST),
        ({"user_id": "user-1"}, NEWEST_FIRST),
        ({"user_id": "user-1", "action": "send"}, NEWEST_FIRST),
        (window, NEWEST_FIRST),
        ({"user_id": "user-2"}, OLDEST_FIRST),
        ({"user_id": "nobody"}, NEWEST_FIRST),
        ({"timestamp__gte": "1970-01-01T00:00:00Z"}, NEWEST_FIRST),  # a date string, parsed as mongoengine does
    ]
    for lookups, order in cases:
        ours = activity_log_list().filter(**lookups).order_by(*order)
        theirs = ActivityLog.objects(**lookups).order_by(*order).as_pymongo()
        assert ours.count() == theirs.count(), lookups
        assert list(ours) == list(theirs), lookups
        for start, stop in ((0, 10), (3, 7), (8, 40), (40, 50), (5, 5)):
            assert ours[start:stop] == list(theirs[start:stop]), (lookups, start, stop)
    for log in logs[:6]:
        for scope in ({}, {"user_id": log["userId"]}, {"user_id": "someone-else"}):
            expected = ActivityLog.objects(event_id=log["_id"], **scope).as_pymongo().first()
            assert activity_log_get(queryset=activity_log_list(filters=scope), log_id=log["_id"].upper()) == expected
        position = activity_log_position(queryset=activity_log_list(), log_id=log["_id"])
        assert (position.timestamp, position.log_id) == (log["timestamp"].replace(tzinfo=timezone.utc), log["_id"])
    with pytest.raises(TypeError):
        activity_log_list()[5:]


def test_secantusdb_reads_gte_after_an_equality_as_gt(api_collection):
    """Why a page before a log reads from one millisecond earlier (selectors._narrowed_to): on an index whose
    range key follows an equality, SecantusDB leaves out the rows equal to a `$gte` bound, which MongoDB keeps.
    Once this fails the stand-in is fixed, and the keyset bound can be the position's own timestamp."""
    store(api_collection, [stored_log(at=START + timedelta(milliseconds=ms)) for ms in range(3)])

    found = api_collection.find({"userId": "user-1", "timestamp": {"$gte": START + timedelta(milliseconds=1)}})

    assert sorted(document["timestamp"] for document in found) == [START + timedelta(milliseconds=2)]
