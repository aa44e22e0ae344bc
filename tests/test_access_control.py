"""Who may read which logs (docs/contract.md "Access control"), through Django's test client on the test database
and the real database process; the same rows over real HTTP are in test_access_control_live.py."""

import logging
import re
import time

import pytest
from bson import ObjectId
from django.core.management import call_command
from django.test import Client
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from logs.api.accounts import issue_api_token
from logs.events import BALANCE_INQUIRY, RECEIVE, SEND
from logs.storage.documents import ActivityLog
from tests.support.builders import activity_event, store
from tests.support.query_plans import index_names

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No directory at:UserWarning")]


@pytest.fixture
def two_users_logs(api_collection):
    """Three logs of user-1 and two of user-2; returns {user: [document ids]}."""
    documents = store(api_collection,
                      [activity_event(user_id="user-1", action=action) for action in (SEND, RECEIVE, BALANCE_INQUIRY)]
                      + [activity_event(user_id="user-2", action=action) for action in (SEND, RECEIVE)])
    by_user = {}
    for document in documents:
        by_user.setdefault(document["userId"], []).append(str(document["_id"]))
    return by_user


def token_client(username, *, all_users=False):
    return Client(headers={"Authorization": f"Token {issue_api_token(username=username, all_users=all_users).key}"})


@pytest.fixture
def own_logs_client(db):
    """user-1's account, without the all-users permission."""
    return token_client("user-1")


def assert_unauthenticated(response):
    assert response.status_code == 401, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json") and set(response.json()) == {"detail"}
    assert response["WWW-Authenticate"] == "Token"


# --- no credentials, bad token ------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Token 0123456789abcdef0123456789abcdef01234567"},
                                     {"Authorization": "Token"}, {"Authorization": "Bearer abc"},
                                     {"Authorization": "Token a b"}])
def test_no_or_bad_credentials_are_401_json_with_www_authenticate_on_list_and_detail(db, two_users_logs, headers):
    client = Client(headers=headers)
    log_id = two_users_logs["user-1"][0]

    for url in ("/user-logs", "/user-logs/", "/user-logs?userId=user-1", f"/user-logs/{log_id}",
                f"/user-logs/{ObjectId()}"):
        response = client.get(url)
        assert_unauthenticated(response)
        assert "user-1" not in response.content.decode()


def test_a_checked_token_is_remembered_for_api_token_cache_seconds_then_checked_again(db, two_users_logs, settings):
    from logs.api.authentication import checked_tokens

    key = issue_api_token(username="user-1").key
    client = Client(headers={"Authorization": f"Token {key}"})
    assert client.get("/user-logs").status_code == 200
    token, expires_at = checked_tokens.entries[key]
    assert token.key == key and token.user.get_username() == "user-1"
    assert 0 < expires_at - time.monotonic() <= settings.API_TOKEN_CACHE_SECONDS
    checked_tokens.entries[key] = (token, time.monotonic() - 1)  # as it stands once its seconds have passed
    Token = type(token)
    Token.objects.filter(key=key).update(key="x" * 40)  # gone from the database, without the delete signal
    assert_unauthenticated(client.get("/user-logs"))


def test_a_rotated_token_stops_working_at_once(db, two_users_logs):
    old = issue_api_token(username="user-1").key
    assert Client(headers={"Authorization": f"Token {old}"}).get("/user-logs").status_code == 200  # now cached
    new = issue_api_token(username="user-1", rotate=True).key

    assert old != new
    assert_unauthenticated(Client(headers={"Authorization": f"Token {old}"}).get("/user-logs"))
    assert Client(headers={"Authorization": f"Token {new}"}).get("/user-logs").status_code == 200


@pytest.mark.parametrize("cache_seconds", [10, 0])
def test_an_inactive_account_is_refused(db, two_users_logs, settings, cache_seconds):
    from django.contrib.auth import get_user_model

    settings.API_TOKEN_CACHE_SECONDS = cache_seconds
    client = token_client("user-1")
    get_user_model().objects.filter(username="user-1").update(is_active=False)

    assert_unauthenticated(client.get("/user-logs"))


def test_a_checked_token_is_trusted_for_api_token_cache_seconds_without_a_query(
        db, two_users_logs, settings, django_assert_num_queries):
    from django.contrib.auth import get_user_model

    client, own_logs = token_client("support", all_users=True), token_client("user-1")
    for each in (client, own_logs):
        assert each.get("/user-logs").status_code == 200
    with django_assert_num_queries(0):
        assert client.get("/user-logs").json()["count"] == 5
        assert own_logs.get("/user-logs").json()["count"] == 3
        assert own_logs.get("/user-logs?userId=user-2").status_code == 403

    # With no cache every request checks the database, so a deactivated account is refused at once.
    settings.API_TOKEN_CACHE_SECONDS = 0
    get_user_model().objects.filter(username="user-1").update(is_active=False)
    assert_unauthenticated(own_logs.get("/user-logs"))


@pytest.mark.parametrize("url", ["/healthz", "/readyz", "/api/schema/", "/api/docs/"])
def test_health_readiness_schema_and_docs_stay_open(api_collection, db, url):
    for headers in ({}, {"Authorization": "Token not-a-valid-token"}):
        assert Client(headers=headers).get(url).status_code == 200, (url, headers)


# --- the all-users permission -------------------------------------------------------------------------

def test_an_all_users_account_reads_every_users_logs(api_client, two_users_logs):
    everyone = api_client.get("/user-logs").json()
    assert everyone["count"] == 5 and {item["userId"] for item in everyone["results"]} == {"user-1", "user-2"}
    assert api_client.get("/user-logs?userId=user-2").json()["count"] == 2
    for user, log_ids in two_users_logs.items():
        assert api_client.get(f"/user-logs/{log_ids[0]}").json()["userId"] == user


def test_a_superuser_reads_every_users_logs(db, two_users_logs):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("admin", password="x" * 20)

    assert token_client("admin").get("/user-logs").json()["count"] == 5


def test_the_permission_can_come_from_a_group(db, two_users_logs):
    from django.contrib.auth.models import Group

    from logs.api.accounts import all_users_permission

    support = Group.objects.create(name="support")
    support.permissions.add(all_users_permission())
    client = token_client("agent-7")
    from django.contrib.auth import get_user_model
    get_user_model().objects.get(username="agent-7").groups.add(support)

    assert client.get("/user-logs").json()["count"] == 5


# --- any other account: its own logs only -------------------------------------------------------------

def test_the_list_is_scoped_to_the_accounts_own_logs_without_a_user_id(own_logs_client, two_users_logs):
    for url in ("/user-logs", "/user-logs/?limit=100", "/user-logs?userId=user-1", "/user-logs?action=send"):
        body = own_logs_client.get(url).json()
        assert body["results"] and {item["userId"] for item in body["results"]} == {"user-1"}, url
    assert own_logs_client.get("/user-logs").json()["count"] == 3
    assert own_logs_client.get("/user-logs?action=send").json()["count"] == 1


@pytest.mark.parametrize("query", ["userId=user-2", "userId=nobody", "userId=user-2&userId=user-1",
                                   "userId=user-1&userId=user-2", "userId=USER-1", "action=send&userId=user-2"])
def test_a_user_id_naming_someone_else_is_403(own_logs_client, two_users_logs, query):
    response = own_logs_client.get(f"/user-logs?{query}")

    assert response.status_code == 403 and set(response.json()) == {"detail"}
    assert "user-2" not in response.content.decode().replace(query, "")


def test_another_users_log_by_id_is_404_like_an_unknown_id(own_logs_client, two_users_logs):
    others = own_logs_client.get(f"/user-logs/{two_users_logs['user-2'][0]}")
    unknown = own_logs_client.get(f"/user-logs/{ObjectId()}")

    assert others.status_code == unknown.status_code == 404 and others.json() == unknown.json()
    assert own_logs_client.get(f"/user-logs/{two_users_logs['user-1'][0]}").json()["userId"] == "user-1"


@pytest.mark.parametrize("query", ["", "userId=user-1", "action=send", "userId=user-1&action=send"])
def test_a_scoped_list_is_one_plain_user_id_equality_answered_from_an_index(own_logs_client, two_users_logs, query):
    from django.contrib.auth import get_user_model
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from logs.api.viewsets import ActivityLogViewSet

    request = Request(APIRequestFactory().get(f"/user-logs?{query}"))
    request.user = get_user_model().objects.get(username="user-1")
    view = ActivityLogViewSet(action="list", kwargs={}, format_kwarg=None, request=request)
    queryset = view.filter_queryset(view.get_queryset())

    assert queryset.query == {"userId": "user-1", **({"action": "send"} if "action" in query else {})}
    collection = ActivityLog._get_collection()
    plan = collection.database.command("explain", {"find": collection.name, "filter": queryset.query,
                                                   "sort": {"timestamp": -1, "_id": -1}, "limit": 10})
    assert index_names(plan) <= {"user_newest_first", "user_action_newest_first"} and index_names(plan)


def test_an_account_with_no_logs_sees_an_empty_list(db, two_users_logs):
    body = token_client("user-3").get("/user-logs").json()

    assert body["count"] == 0 and body["results"] == []


# --- the browsable API's session login ----------------------------------------------------------------

def test_the_browsable_api_logs_in_with_a_session_and_csrf_and_logs_out(db, two_users_logs):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("user-1", password="a long local password")
    browser = Client(enforce_csrf_checks=True)
    assert browser.get("/user-logs", HTTP_ACCEPT="text/html").status_code == 401

    page = browser.get("/api-auth/login/?next=/user-logs%3FuserId%3Duser-1").content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    refused = browser.post("/api-auth/login/", {"username": "user-1", "password": "wrong",
                                                "csrfmiddlewaretoken": csrf, "next": "/user-logs?userId=user-1"})
    assert refused.status_code == 200 and "_auth_user_id" not in browser.session
    no_csrf = Client(enforce_csrf_checks=True).post("/api-auth/login/",
                                                    {"username": "user-1", "password": "a long local password"})
    assert no_csrf.status_code == 403
    logged_in = browser.post("/api-auth/login/", {"username": "user-1", "password": "a long local password",
                                                  "csrfmiddlewaretoken": csrf, "next": "/user-logs?userId=user-1"})
    assert logged_in.status_code == 302 and logged_in["Location"] == "/user-logs?userId=user-1"

    page = browser.get("/user-logs?userId=user-1", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and "&quot;count&quot;: 3" in page.content.decode()
    assert browser.get("/user-logs?userId=user-2").status_code == 403

    csrf = browser.cookies["csrftoken"].value
    assert browser.post("/api-auth/logout/", {"csrfmiddlewaretoken": csrf})["Location"] == "/api-auth/login/"
    assert browser.get("/user-logs").status_code == 401


# --- the schema --------------------------------------------------------------------------------------

def test_the_schema_documents_the_token_scheme_on_every_operation(db):
    schema = Client().get("/api/schema/?format=json").json()

    assert schema["components"]["securitySchemes"]["tokenAuth"] == {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": 'Token-based authentication with required prefix "Token"'}
    for path in ("/user-logs/", "/user-logs/{id}/"):
        operation = schema["paths"][path]["get"]
        assert {"tokenAuth": []} in operation["security"] and {} not in operation["security"]
        assert {"401", "404", "429"} <= set(operation["responses"])
    assert "403" in schema["paths"]["/user-logs/"]["get"]["responses"]


# --- api_token ----------------------------------------------------------------------------------------

def api_token(*args):
    from io import StringIO

    out = StringIO()
    call_command("api_token", *args, stdout=out)
    return out.getvalue().strip().splitlines()[-1].split()[-1]


def test_api_token_creates_the_account_and_prints_the_same_key_until_rotated(db):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    first = api_token("user-5")
    assert api_token("user-5") == first
    assert Token.objects.get(user__username="user-5").key == first
    user = get_user_model().objects.get(username="user-5")
    assert not user.has_usable_password() and not user.has_perm("logs.view_all_activity_logs")

    rotated = api_token("user-5", "--rotate")
    assert rotated != first and api_token("user-5") == rotated
    assert list(Token.objects.filter(user__username="user-5").values_list("key", flat=True)) == [rotated]


def test_api_token_grants_the_all_users_permission_only_when_asked_and_never_takes_it_away(db):
    from django.contrib.auth import get_user_model

    def reads_every_user():
        return get_user_model().objects.get(username="svc").has_perm("logs.view_all_activity_logs")

    key = api_token("svc")
    assert not reads_every_user()
    assert api_token("svc", "--all-users") == key and reads_every_user()
    assert api_token("svc") == key and reads_every_user()


def test_api_token_refuses_a_username_django_refuses(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Enter a valid username"):
        api_token("not a name!")


# --- throttling and the audit line ------------------------------------------------------------------

@given(st.text(alphabet="aZ9_.~-=&%+;é /", max_size=24))
@hypothesis_settings(max_examples=400, deadline=None)
def test_the_audited_query_is_the_query_string_as_django_writes_it_back(raw):
    """`normalized_query` keeps a plain query string as sent only where Django's `QueryDict.urlencode()` would
    write the same: any other is parsed and written back as before."""
    from django.test import RequestFactory
    from rest_framework.request import Request

    from logs.api.audit import normalized_query

    request = Request(RequestFactory().generic("GET", "/user-logs", QUERY_STRING=raw))
    assert normalized_query(request) == request.query_params.urlencode()


@pytest.mark.parametrize("raw", ["", "userId=user-1", "userId=user-1&action=send&limit=10", "after=", "a.b-c~d_e=F.9"])
def test_a_plain_query_string_is_audited_as_sent(raw):
    from django.test import RequestFactory
    from rest_framework.request import Request

    from logs.api import audit

    request = Request(RequestFactory().generic("GET", "/user-logs", QUERY_STRING=raw))
    assert audit._PLAIN_PAIRS.fullmatch(raw) and audit.normalized_query(request) == raw


def test_the_all_users_permission_is_asked_of_django_once_per_user_object(db):
    from django.contrib.auth import get_user_model

    from logs.api.permissions import reads_every_user

    user = get_user_model().objects.create_user("someone")
    asked = []
    has_perm = user.has_perm
    user.has_perm = lambda perm, obj=None: asked.append(perm) or has_perm(perm, obj)
    assert [reads_every_user(user) for _ in range(3)] == [False] * 3 and len(asked) == 1
    again = get_user_model().objects.get(username="someone")  # another object: asked again
    again.has_perm = lambda perm, obj=None: asked.append(perm) or has_perm(perm, obj)
    assert reads_every_user(again) is False and len(asked) == 2


def test_every_read_is_audited_with_principal_owner_query_and_status(own_logs_client, two_users_logs, caplog):
    caplog.set_level(logging.INFO, logger="logs.audit")
    own_logs_client.get("/user-logs?action=send")
    own_logs_client.get("/user-logs?userId=user-2")
    own_logs_client.get(f"/user-logs/{two_users_logs['user-1'][0]}")
    own_logs_client.get(f"/user-logs/{two_users_logs['user-2'][0]}")
    Client().get("/user-logs?userId=user-2")

    audited = [{name: getattr(record, name) for name in ("principal", "owner", "query", "status", "log_id")}
               for record in caplog.records if record.name == "logs.audit"]
    assert audited == [
        {"principal": "user-1", "owner": "user-1", "query": "action=send", "status": 200, "log_id": None},
        {"principal": "user-1", "owner": "user-2", "query": "userId=user-2", "status": 403, "log_id": None},
        {"principal": "user-1", "owner": "user-1", "query": "", "status": 200, "log_id": two_users_logs["user-1"][0]},
        {"principal": "user-1", "owner": None, "query": "", "status": 404, "log_id": two_users_logs["user-2"][0]},
        {"principal": None, "owner": "user-2", "query": "userId=user-2", "status": 401, "log_id": None},
    ]
