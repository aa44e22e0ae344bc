"""The `/user-logs` API against the real database process (docs/contract.md "API"), through Django's test client."""

from datetime import datetime, timedelta, timezone

import pytest
from django.http import QueryDict
from pymongo.errors import (
    AutoReconnect,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from logs.events import ACTIONS, BALANCE_INQUIRY, RECEIVE, SEND
from logs.storage.documents import ActivityLog
from tests.support.builders import START, activity_event, store
from tests.support.servers import frozen

pytestmark = [
    pytest.mark.integration,
    # WhiteNoise notes that `collectstatic` has not run; with finders on it serves the assets anyway.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]


def newest_first(documents):
    return sorted(documents, key=lambda document: (document["timestamp"], document["_id"]), reverse=True)


def ids(documents):
    return [str(document["_id"]) for document in documents]


@pytest.fixture
def client(api_client):
    """Every request of these tests comes from an account allowed to read every user's logs."""
    return api_client


def get_json(client, url, expected_status=200, **extra):
    response = client.get(url, **extra)
    assert response.status_code == expected_status, (url, response.status_code, response.content[:500])
    assert "json" in response["Content-Type"]
    return response.json()


# --- one log -----------------------------------------------------------------------------------------

def test_a_transfer_is_served_with_money_as_a_decimal_string_and_the_time_in_utc(api_collection, client):
    event = activity_event(action=SEND, at=datetime(2026, 11, 1, 13, 5, 7, 123000, tzinfo=timezone(timedelta(hours=2))),
                           cents=1_000_000_00)
    [document] = store(api_collection, [event])

    body = get_json(client, f"/user-logs/{document['_id']}")

    assert body == {
        "id": str(document["_id"]), "eventId": event.event_id, "userId": "user-1", "action": "send",
        "amount": "1000000.00", "currency": "USD", "counterpartyId": "user-99",
        "transferId": event.transfer_id, "balance": None, "timestamp": "2026-11-01T11:05:07.123Z",
    }


def test_a_balance_inquiry_has_null_transfer_fields(api_collection, client):
    [document] = store(api_collection, [activity_event(action=BALANCE_INQUIRY, cents=5)])

    body = get_json(client, f"/user-logs/{document['_id']}/")

    assert body["balance"] == "0.05"
    assert body["amount"] is body["currency"] is body["counterpartyId"] is body["transferId"] is None


# A fixed UUID (no log has it): every pytest-xdist worker must collect the same test ids.
@pytest.mark.parametrize("log_id", ["3f1c2d4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f", "6b06f8763baa7c681da188a1", "zzz",
                                    "abc.def", "6b06f8763baa7c681da188a", "%7B%22%24gt%22%3A%22%22%7D"])
def test_unknown_or_malformed_ids_are_404_json(api_collection, client, log_id):
    store(api_collection, [activity_event()])

    for url in (f"/user-logs/{log_id}", f"/user-logs/{log_id}/"):
        assert get_json(client, url, 404) == {"detail": "Not found."}


def test_unrouted_paths_are_404_json(client):
    assert get_json(client, "/no-such-page", 404) == {"detail": "Not found."}


# --- the list ----------------------------------------------------------------------------------------

def test_the_list_is_newest_first_with_its_paging_fields(api_collection, client):
    documents = store(api_collection, [activity_event(at=START + timedelta(minutes=minute)) for minute in range(25)])

    body = get_json(client, "/user-logs")

    assert body["count"] == 25 and body["page"] == 1 and body["limit"] == 10 and body["totalPages"] == 3
    # `next` continues by keyset after the page's last log (docs/decisions/0015-keyset-pages.md).
    assert body["previous"] is None and body["next"].endswith(f"/user-logs?after={body['results'][-1]['id']}")
    assert [item["id"] for item in body["results"]] == ids(newest_first(documents))[:10]
    assert list(body) == ["count", "next", "previous", "page", "limit", "totalPages", "results"]


def test_pages_cover_every_log_once_in_order_even_when_timestamps_tie(api_collection, client):
    # Three logs per millisecond: the _id tie-breaker keeps page boundaries stable.
    documents = store(api_collection, [activity_event(at=START + timedelta(milliseconds=i // 3)) for i in range(23)])

    pages = [get_json(client, f"/user-logs?limit=5&page={page}") for page in range(1, 6)]

    assert [item["id"] for page in pages for item in page["results"]] == ids(newest_first(documents))
    assert [len(page["results"]) for page in pages] == [5, 5, 5, 5, 3]
    assert pages[-1]["next"] is None and pages[-1]["previous"].endswith("limit=5&page=4")
    assert all(page["totalPages"] == 5 for page in pages)


def test_the_largest_page_is_100_logs(api_collection, client):
    store(api_collection, [activity_event(at=START + timedelta(seconds=second)) for second in range(120)])

    assert len(get_json(client, "/user-logs?limit=100")["results"]) == 100
    assert len(get_json(client, "/user-logs?limit=100&page=2")["results"]) == 20


def test_a_list_with_no_match_is_an_empty_first_page(api_collection, client):
    store(api_collection, [activity_event(user_id="user-1")])

    body = get_json(client, "/user-logs?userId=user-2")

    assert body["count"] == 0 and body["results"] == [] and body["totalPages"] == 0


def test_a_page_past_the_end_is_404(api_collection, client):
    store(api_collection, [activity_event(at=START + timedelta(minutes=minute)) for minute in range(11)])

    assert get_json(client, "/user-logs?page=2")["results"]
    assert "past the last page" in get_json(client, "/user-logs?page=3", 404)["detail"]
    get_json(client, "/user-logs?userId=nobody&page=2", 404)


def test_the_same_urls_answer_with_or_without_a_trailing_slash(api_collection, client):
    [document] = store(api_collection, [activity_event()])

    for path in ("/user-logs", f"/user-logs/{document['_id']}"):
        without, with_slash = client.get(f"{path}?limit=5"), client.get(f"{path}/?limit=5")
        assert without.status_code == with_slash.status_code == 200
        assert without.json() == with_slash.json()


def test_filters_combine_and_page_through_matching_logs_newest_first(api_collection, client):
    events = []
    for minute in range(60):
        for user_id in ("user-1", "user-2"):
            events.append(activity_event(user_id=user_id, action=ACTIONS[minute % 3],
                                         at=START + timedelta(minutes=minute)))
    documents = store(api_collection, events)
    start, end = START + timedelta(minutes=10), START + timedelta(minutes=40)
    expected = newest_first([
        document for document in documents
        if document["userId"] == "user-1" and document["action"] == "send"
        and start <= document["timestamp"].replace(tzinfo=timezone.utc) <= end
    ])
    query = "userId=user-1&action=send&from=2026-11-01T00:10:00Z&to=2026-11-01T00:40:00%2B00:00&limit=4"

    pages = [get_json(client, f"/user-logs?{query}&page={page}") for page in (1, 2, 3)]

    assert len(expected) == 10  # minutes 12, 15, ..., 39: both bounds are inclusive where they hit (none here)
    assert [item["id"] for page in pages for item in page["results"]] == ids(expected)
    assert [page["count"] for page in pages] == [10, 10, 10] and pages[0]["totalPages"] == 3
    assert all(item["userId"] == "user-1" and item["action"] == "send" for page in pages for item in page["results"])
    get_json(client, f"/user-logs?{query}&page=4", 404)


@pytest.mark.parametrize("query, expected_minutes", [
    ("from=2026-11-01T00:02:00Z&to=2026-11-01T00:04:00Z", [4, 3, 2]),
    ("from=2026-11-01T00:02:00&to=2026-11-01T00:04:00", [4, 3, 2]),  # no zone: UTC
    ("from=2026-11-01T02:02:00%2B02:00", [5, 4, 3, 2]),
    ("to=2026-11-01T00:00:59.999Z", [0]),
    ("from=2026-11-01T00:05:00.001Z", []),
])
def test_from_and_to_are_inclusive_iso_8601_bounds(api_collection, client, query, expected_minutes):
    documents = store(api_collection, [activity_event(at=START + timedelta(minutes=minute)) for minute in range(6)])
    by_minute = {document["timestamp"].minute: str(document["_id"]) for document in documents}

    body = get_json(client, f"/user-logs?{query}")

    assert [item["id"] for item in body["results"]] == [by_minute[minute] for minute in expected_minutes]


@pytest.mark.parametrize("action", ACTIONS)
def test_action_filter_returns_only_that_action(api_collection, client, action):
    store(api_collection, [activity_event(action=each) for each in (SEND, RECEIVE, BALANCE_INQUIRY, SEND)])

    body = get_json(client, f"/user-logs?action={action}")

    assert body["count"] == (2 if action == SEND else 1)
    assert {item["action"] for item in body["results"]} == {action}


@pytest.mark.parametrize("query, field", [
    ("action=nope", "action"),
    ("action=SEND", "action"),
    ("limit=0", "limit"),
    ("limit=101", "limit"),
    ("limit=-1", "limit"),
    ("limit=ten", "limit"),
    ("page=abc", "page"),
    ("page=0", "page"),
    ("page=1.5", "page"),
    ("page=%C2%B2", "page"),  # a superscript two: a digit to str.isdigit, not to int()
    ("from=yesterday", "from"),
    ("to=2026-13-01T00:00:00Z", "to"),
    ("from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "from"),
    ("userId=" + "u" * 65, "userId"),
    ("userId=user%201", "userId"),
    ("user_id=user-1", "user_id"),
    # At the edges of the calendar an offset pushes the moment out of what can be stored or even represented.
    ("from=0001-01-01T00:00:00%2B01:00", "from"),
    ("to=9999-12-31T23:59:59-14:00", "to"),
    ("from=1969-12-31T23:59:59Z", "from"),
    ("to=9999-12-31T00:00:00Z", "to"),
    # Repeated parameters are not last-wins.
    ("userId=user-1&userId=user-2", "userId"),
    ("action=send&action=send", "action"),
    ("page=1&page=2", "page"),
    ("limit=5&limit=5", "limit"),
])
def test_invalid_query_values_are_400_naming_the_field(api_collection, client, query, field):
    store(api_collection, [activity_event()])

    body = get_json(client, f"/user-logs?{query}", 400)

    assert field in body and all(isinstance(message, str) for message in body[field])


@pytest.mark.parametrize("query", [
    "userId[$ne]=x",
    "userId[%24ne]=x",
    "userId=%7B%22%24gt%22%3A%22%22%7D",  # {"$gt":""}
    "userId[$regex]=.*",
    "userId=.*",
    "userId=user.1",  # a valid id, and no regex: it must not match user-1
    "action[$in]=send",
    "action=%7B%22%24ne%22%3A%22x%22%7D",
    "from[$gt]=2000-01-01",
    "$where=1",
])
def test_query_values_are_plain_values_never_operators(api_collection, client, query):
    store(api_collection, [activity_event(user_id="user-1", action=SEND)])

    response = client.get(f"/user-logs?{query}")

    assert response.status_code == 400 or (response.status_code == 200 and response.json()["count"] == 0), \
        (query, response.status_code, response.content[:300])


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_write_methods_are_405(api_collection, client, method):
    [document] = store(api_collection, [activity_event()])

    for url in ("/user-logs", "/user-logs/", f"/user-logs/{document['_id']}", f"/user-logs/{document['_id']}/"):
        response = getattr(client, method)(url, data="{}", content_type="application/json")
        assert response.status_code == 405, (method, url, response.status_code)
    assert api_collection.count_documents({}) == 1


# --- the queries behind the pages: tests/test_query_plans.py ---------------------------------------



# --- what the adapters bridge: each test fails once the library no longer needs the adapter -----------

def test_django_filter_asserts_django_querysets_which_the_stored_logs_are_not():
    from django_filters import FilterSet

    from logs.api.filters import ActivityLogFilter
    from logs.storage.selectors import activity_log_list

    queryset = activity_log_list()
    filterset = ActivityLogFilter(QueryDict("userId=user-1"), queryset)
    assert filterset.is_valid()
    with pytest.raises(AssertionError, match="to return a QuerySet"):
        FilterSet.filter_queryset(filterset, queryset)
    assert filterset.qs.query == {"userId": "user-1"}


def test_the_filter_form_class_built_once_is_the_one_django_filter_builds_per_request():
    from django_filters import FilterSet

    from logs.api.filters import ActivityLogFilter
    from logs.storage.selectors import activity_log_list

    first, second = (ActivityLogFilter(QueryDict("userId=user-1"), activity_log_list()) for _ in range(2))
    assert first.get_form_class() is second.get_form_class()
    generic = FilterSet.get_form_class(second)
    assert generic is not first.get_form_class()  # django-filter still builds a class per call
    cached = first.get_form_class()
    assert generic.__mro__[1:] == cached.__mro__[1:]
    assert {name: (type(field), field.required, field.label) for name, field in generic.base_fields.items()} == \
        {name: (type(field), field.required, field.label) for name, field in cached.base_fields.items()}


def test_filter_forms_share_their_fields_which_neither_validating_nor_rendering_changes():
    """Why the forms may share their fields (`filters.SharedFormFields`) instead of deep-copying them per request:
    validating a query string, valid or not, and rendering the form as the browsable API does write nothing to a
    field or its widget."""
    from logs.api.filters import ActivityLogFilter
    from logs.storage.selectors import activity_log_list

    def state(fields):
        return {name: ({key: repr(value) for key, value in vars(field).items()},
                       {key: repr(value) for key, value in vars(field.widget).items()})
                for name, field in fields.items()}

    invalid = ActivityLogFilter(QueryDict("userId=not a user!&action=steal&from=2026-13-01"), activity_log_list())
    valid = ActivityLogFilter(QueryDict("userId=user-1&action=send&to=2026-11-01T00:00:00Z"), activity_log_list())
    fields = valid.form.fields
    before = state(fields)
    assert not invalid.is_valid() and set(invalid.errors) == {"userId", "action", "from"}
    assert valid.is_valid()
    assert "user-1" in valid.form.as_p() and "not a user!" in invalid.form.as_p()
    assert invalid.form.fields is not fields
    assert all(invalid.form.fields[name] is field for name, field in fields.items())
    assert state(fields) == before


def test_each_filterset_gets_filters_of_its_own_as_django_filters_deep_copy_would_leave_them():
    """The filters' copy per FilterSet: what a deep copy gives each FilterSet (its own filters, its `parent`, a
    `method` that calls that parent) without copying the declarations, which two FilterSets then share."""
    import copy

    from logs.api.filters import ActivityLogFilter
    from logs.storage.selectors import activity_log_list

    declared = ActivityLogFilter.base_filters
    deep = copy.deepcopy(dict(declared))  # what django-filter gets from a plain dict
    first, second = (ActivityLogFilter(QueryDict("userId=user-1&action=send"), activity_log_list()) for _ in range(2))
    assert list(first.filters) == list(second.filters) == list(deep) == ["userId", "action", "from", "to"]
    for name, original in declared.items():
        mine, theirs = first.filters[name], second.filters[name]
        assert mine is not original and mine is not theirs and mine.parent is first and theirs.parent is second
        assert (type(mine), mine.field_name, mine.lookup_expr, mine.method, mine.extra) == \
            (type(deep[name]), deep[name].field_name, deep[name].lookup_expr, deep[name].method, deep[name].extra)
        if original.method is not None:
            assert mine.filter.f is mine and theirs.filter.f is theirs
    assert first.is_valid() and second.is_valid()
    assert first.qs.query == second.qs.query == {"userId": "user-1", "action": "send"}


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("absent", [None, "currency", "userId", "balanceCents"])
def test_the_serializer_represents_a_stored_log_exactly_as_drf_would(action, absent):
    from rest_framework import serializers

    from logs.api.serializers import ActivityLogSerializer

    stored = ActivityLog.mongo_document(activity_event(action=action))
    stored.pop(absent, None)
    generic = serializers.Serializer.to_representation(ActivityLogSerializer(), stored)
    assert ActivityLogSerializer(stored).data == generic
    assert ActivityLogSerializer([stored, stored], many=True).data == [generic, generic]
    assert list(ActivityLogSerializer(stored).data) == list(generic)  # the same keys in the same order


def test_the_serializer_represents_values_of_unexpected_types_exactly_as_drf_would():
    """Strings pass through the string fields as they are (`serializers._keeps_strings`); anything else still
    goes through the field, as DRF would send it."""
    import uuid

    from rest_framework import serializers

    from logs.api.serializers import ActivityLogSerializer

    stored = ActivityLog.mongo_document(activity_event(action=SEND))
    stored.update(userId=42, action="steal", currency=b"USD", transferId=uuid.UUID(int=7), counterpartyId=" x ")
    generic = serializers.Serializer.to_representation(ActivityLogSerializer(), stored)
    assert ActivityLogSerializer(stored).data == generic
    assert generic["userId"] == "42" and generic["transferId"] == str(uuid.UUID(int=7))


def test_drf_binds_a_copy_of_every_field_for_each_serializer_which_the_api_does_once():
    from logs.api.serializers import ActivityLogSerializer

    assert ActivityLogSerializer().fields["userId"] is not ActivityLogSerializer().fields["userId"]
    assert ActivityLogSerializer.conversions() is ActivityLogSerializer.conversions()


def test_an_exact_lookup_is_equality_where_mongoengine_writes_an_anchored_regex():
    """django-filter asks for `user_id__exact`; a regex would be evaluated per index key instead of seeking the one
    key equality names."""
    import re

    from logs.storage.selectors import activity_log_list

    assert activity_log_list().filter(user_id__exact="user-1").query == {"userId": "user-1"}
    assert isinstance(ActivityLog.objects(user_id__exact="user-1")._query["userId"], re.Pattern)


def test_djangos_paginator_counts_the_stored_logs_with_the_server_not_by_loading_them():
    from django.utils.inspect import method_has_no_args

    from logs.storage.selectors import activity_log_list

    assert method_has_no_args(activity_log_list().count)
    assert not method_has_no_args(ActivityLog.objects.count)  # what a mongoengine queryset would have cost


@pytest.mark.parametrize("stored", [0, 1, 6, 7, 20])
def test_every_page_holds_the_rows_and_counts_django_reads_from_the_whole_list(api_collection, stored):
    """Django's Paginator over the stored logs counts with the server and reads a page as a slice of the query; over
    every row, loaded, it is the reference: the same count, pages and rows of each, empty and partial pages too."""
    from django.core.paginator import Paginator

    from logs.storage.selectors import activity_log_list

    if stored:
        store(api_collection, [activity_event(at=START + timedelta(seconds=second // 2)) for second in range(stored)])
    every_row = list(activity_log_list())
    for per_page in (1, 3, 7, 100):
        paginator, reference = Paginator(activity_log_list(), per_page), Paginator(every_row, per_page)
        assert (paginator.count, paginator.num_pages) == (reference.count, reference.num_pages)
        for number in reference.page_range:
            page, expected = paginator.page(number), reference.page(number)
            assert list(page) == list(expected), (per_page, number)
            assert (page.has_next(), page.has_previous(), len(page)) == \
                (expected.has_next(), expected.has_previous(), len(expected))


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/html", "application/json; indent=4",
                                    "text/html;q=0.9, application/json", "application/xml", "*/*;q=0.8"])
@pytest.mark.parametrize("query", ["", "format=json", "format=api"])
def test_the_negotiation_answers_as_drfs_does(accept, query):
    """`ApiContentNegotiation` gives at once the answer DRF's negotiation gives for the common Accept headers,
    and leaves every other case to it: the same renderer and media type, or the same refusal."""
    from django.test import RequestFactory
    from rest_framework.exceptions import NotAcceptable
    from rest_framework.negotiation import DefaultContentNegotiation
    from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
    from rest_framework.request import Request

    from logs.api.negotiation import ApiContentNegotiation

    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(RequestFactory().get(f"/user-logs?{query}", **headers))
    renderers = [JSONRenderer(), BrowsableAPIRenderer()]

    def answer(negotiation):
        try:
            renderer, media_type = negotiation.select_renderer(request, renderers)
        except NotAcceptable:
            return "406"
        return type(renderer), media_type
    assert answer(ApiContentNegotiation()) == answer(DefaultContentNegotiation())


@pytest.mark.parametrize("query", ["limit=500", "limit=0", "limit=ten"])
def test_drf_falls_back_silently_on_a_refused_limit_which_the_api_answers_with_400(query):
    from django.test import RequestFactory
    from rest_framework.pagination import PageNumberPagination
    from rest_framework.request import Request

    from logs.api.pagination import ActivityLogPagination

    request = Request(RequestFactory().get(f"/user-logs?{query}"))
    assert PageNumberPagination.get_page_size(ActivityLogPagination(), request) in (10, 100)


# --- docs, browser view, probes, production settings --------------------------------------------------

def test_the_openapi_schema_validates_and_documents_every_parameter_and_field(client):
    from drf_spectacular.validation import validate_schema

    schema = get_json(client, "/api/schema/?format=json")
    validate_schema(schema)

    parameters = {parameter["name"]: parameter["schema"]
                  for parameter in schema["paths"]["/user-logs/"]["get"]["parameters"]}
    assert set(parameters) == {"userId", "action", "from", "to", "page", "limit", "after", "before"}
    assert parameters["action"]["enum"] == sorted(ACTIONS)
    assert parameters["from"]["format"] == parameters["to"]["format"] == "date-time"
    assert parameters["limit"]["maximum"] == 100 and parameters["page"]["minimum"] == 1
    page, _keyset = schema["components"]["schemas"]["PaginatedActivityLogList"]["oneOf"]
    assert set(page["required"]) == {"count", "next", "previous", "page", "limit", "totalPages", "results"}
    log = schema["components"]["schemas"]["ActivityLog"]["properties"]
    assert set(log) == {"id", "eventId", "userId", "action", "amount", "currency", "counterpartyId", "transferId",
                        "balance", "timestamp"}
    assert all(log[name].get("nullable") for name in ("amount", "currency", "counterpartyId", "transferId", "balance"))
    assert all("type" in log[name] or "allOf" in log[name] for name in log)


def test_swagger_ui_is_served_with_local_assets(client):
    page = client.get("/api/docs/").content.decode()

    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower() and "https://" not in page
    assert client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200


def test_a_browser_gets_the_browsable_api_with_the_filter_form(api_collection, client):
    store(api_collection, [activity_event(at=START + timedelta(minutes=minute)) for minute in range(12)])

    response = client.get("/user-logs?userId=user-1", HTTP_ACCEPT="text/html")

    page = response.content.decode()
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    assert 'name="userId"' in page and 'name="action"' in page and 'name="from"' in page
    assert "page=2" in page and "&quot;totalPages&quot;: 2" in page


def test_a_query_on_a_stalled_database_is_a_504_naming_the_timeout(api_collection, client, settings, mongodb_server):
    """On a connection the server accepted, a query it never answers runs out of the request's deadline."""
    settings.API_DATABASE_TIMEOUT_MS = 500
    store(api_collection, [activity_event()])
    get_json(client, "/user-logs?userId=user-1")  # leaves a pooled connection for the stalled query
    with frozen(mongodb_server):
        body = get_json(client, "/user-logs?userId=user-1", expected_status=504)
    assert "did not answer within 500 ms (NetworkTimeout)" in body["detail"]
    get_json(client, "/user-logs?userId=user-1")


@pytest.mark.parametrize("error, status", [
    (ServerSelectionTimeoutError("no server", None), 503),
    (AutoReconnect("connection reset"), 503),
    (NetworkTimeout("timed out"), 504),
    (ExecutionTimeout("operation exceeded time limit", 50), 504),
])
def test_pymongo_errors_are_classified_by_pymongo_as_unreachable_or_too_slow(error, status):
    from logs.api.viewsets import database_failure

    assert database_failure(error).status_code == status


def test_other_errors_are_not_database_failures():
    from logs.api.viewsets import database_failure

    assert database_failure(OperationFailure("bad query", 2)) is None and database_failure(ValueError()) is None


def test_liveness_and_readiness_answer_while_the_database_is_up(api_collection, client):
    assert get_json(client, "/healthz") == {"status": "ok"}
    assert get_json(client, "/readyz") == {"status": "ok"}


def test_production_defaults_debug_off_security_headers_and_django_tables_in_the_local_sqlite_file(client):
    from django.conf import settings

    assert settings.DEBUG is False
    # Accounts and tokens only; activity logs stay in MongoDB. (pytest-django swaps in its test database.)
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert settings.LOCAL_DATABASE.parent == settings.BASE_DIR / ".data"
    response = client.get("/healthz")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
