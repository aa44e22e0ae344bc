"""The access-control rows over real HTTP: runserver on the live MongoDB-protocol database and a migrated
SQLite database, with tokens made by `manage.py api_token` as a script would make them."""

import uuid

import pytest

from tests.support.databases import own_database
from tests.support.http import http_json, http_response
from tests.support.servers import ProductionApi

# With the other modules on `live_api` (a session fixture) in one worker: one server for the three.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("live-api")]


def answer(url, headers=None):
    """(status, parsed JSON or text)."""
    return http_json(url, headers=headers)[:2]


def token_header(key):
    return {"Authorization": f"Token {key}"}


@pytest.fixture(scope="module")
def own_logs_header(auth_database):
    """user-1's account, without the all-users permission."""
    return token_header(auth_database.token("user-1"))


def a_log_id_of(live_api, user, headers):
    status, body = answer(f"{live_api.url}/user-logs?userId={user}&limit=1", headers=headers)
    assert status == 200, body
    return body["results"][0]["id"]


@pytest.mark.parametrize("headers", [{}, token_header("0" * 40), token_header("")])
def test_no_or_bad_credentials_are_401_json_with_www_authenticate(live_api, live_auth_header, headers):
    log_id = a_log_id_of(live_api, "user-1", live_auth_header)

    for path in ("/user-logs", "/user-logs/?userId=user-1", f"/user-logs/{log_id}"):
        status, response_headers, body = http_response(f"{live_api.url}{path}", headers=headers)
        assert status == 401 and response_headers["WWW-Authenticate"] == "Token", (path, status)
        assert response_headers["Content-Type"] == "application/json" and b"user-1" not in body


def test_an_all_users_token_reads_every_users_logs(live_api, live_auth_header):
    status, body = answer(f"{live_api.url}/user-logs?limit=100", headers=live_auth_header)
    assert status == 200 and body["count"] == 45
    assert {item["userId"] for item in body["results"]} == {"user-1", "user-2"}
    log_id = a_log_id_of(live_api, "user-2", live_auth_header)
    assert answer(f"{live_api.url}/user-logs/{log_id}", headers=live_auth_header)[1]["userId"] == "user-2"


def test_another_account_reads_only_its_own_logs(live_api, live_auth_header, own_logs_header):
    status, body = answer(f"{live_api.url}/user-logs?limit=100", headers=own_logs_header)
    assert status == 200 and body["count"] == 23 and {item["userId"] for item in body["results"]} == {"user-1"}
    assert answer(f"{live_api.url}/user-logs?userId=user-1", headers=own_logs_header)[1]["count"] == 23

    status, body = answer(f"{live_api.url}/user-logs?userId=user-2", headers=own_logs_header)
    assert status == 403 and set(body) == {"detail"}

    others = answer(f"{live_api.url}/user-logs/{a_log_id_of(live_api, 'user-2', live_auth_header)}",
                    headers=own_logs_header)
    unknown = answer(f"{live_api.url}/user-logs/{uuid.uuid4().hex[:24]}", headers=own_logs_header)
    assert others == unknown and others[0] == 404
    own = a_log_id_of(live_api, "user-1", live_auth_header)
    assert answer(f"{live_api.url}/user-logs/{own}", headers=own_logs_header)[1]["id"] == own


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/api/schema/", "/api/docs/"])
def test_health_readiness_schema_and_docs_stay_open(live_api, path):
    assert answer(f"{live_api.url}{path}")[0] == 200


def test_a_token_over_its_rate_gets_429_with_retry_after_while_other_tokens_are_served(
        mongodb_server, auth_database, own_logs_header, live_auth_header, log_dir):
    # One worker: the throttle's counts live in the process (Django's local-memory cache).
    with own_database(mongodb_server, "test_throttle") as uri:
        server = ProductionApi(uri, log_dir, database_url=auth_database.url, GUNICORN_WORKERS="1",
                               API_THROTTLE_RATE="3/minute")
        try:
            url = f"{server.url}/user-logs"
            assert [http_response(url, headers=own_logs_header)[0] for _ in range(3)] == [200, 200, 200]
            status, headers, body = http_response(url, headers=own_logs_header)
            assert status == 429 and 0 < int(headers["Retry-After"]) <= 60 and b"throttled" in body.lower()
            assert http_response(f"{url}/{uuid.uuid4().hex[:24]}", headers=own_logs_header)[0] == 429
            assert http_response(url, headers=live_auth_header)[0] == 200
            assert http_response(f"{server.url}/healthz", headers=own_logs_header)[0] == 200
        finally:
            server.stop()
