"""The API as the image runs it (gunicorn with uvicorn workers): schemathesis against its own OpenAPI schema,
deadlines through a database outage and a stalled database."""

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import schemathesis
from conftest import ProductionApi, frozen, http_json, wait_for
from hypothesis import HealthCheck, given, settings
from pymongo import MongoClient
from schemathesis.specs.openapi.checks import positive_data_acceptance
from test_api import ACTIONS, START, activity_event, store

from stack import processes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live_api(mongodb_server, log_dir, auth_database):
    """A live server over 45 stored logs (user-1 and user-2, every action, one a minute)."""
    name = f"test_live_{uuid.uuid4().hex[:10]}"
    uri = f"mongodb://{processes.HOST}:{mongodb_server.port}/{name}"
    with MongoClient(uri, tz_aware=True) as client:
        events = [activity_event(user_id=f"user-{minute % 2 + 1}", action=ACTIONS[minute % 3],
                                 at=START + timedelta(minutes=minute)) for minute in range(45)]
        store(client[name]["activity_logs"], events)
    server = ProductionApi(uri, log_dir, database_url=auth_database.url, MONGODB_SERVER_SELECTION_TIMEOUT_MS="1000")
    yield server
    server.stop()
    with MongoClient(uri) as client:
        client.drop_database(name)


def test_no_request_the_schema_allows_gets_a_server_error_or_an_undocumented_answer(live_api, live_auth_header):
    """Property-based: schemathesis generates valid and invalid requests from /api/schema/ for each operation."""
    schema = schemathesis.openapi.from_url(f"{live_api.url}/api/schema/?format=json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {operation.path for operation in operations} == {"/user-logs/", "/user-logs/{id}/"}

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def responses_conform(case):
            # The one constraint OpenAPI cannot state, `from` <= `to`, makes some schema-valid requests
            # a documented 400; every other check (no 5xx, status, content type, body schema) applies.
            case.call_and_validate(headers=live_auth_header, excluded_checks=[positive_data_acceptance])

        responses_conform()


def test_readyz_is_503_while_the_database_is_down_and_200_once_it_is_back(live_api, mongodb_server, live_auth_header):
    assert http_json(f"{live_api.url}/readyz")[:2] == (200, {"status": "ok"})
    mongodb_server.stop()
    try:
        status, body, _ = wait_for(lambda: (lambda answer: answer[0] == 503 and answer)(http_json(f"{live_api.url}/readyz")),
                                timeout=20, message="/readyz to report the outage")
        assert body["status"] == "unavailable" and "MongoDB unreachable" in body["reason"]
        assert http_json(f"{live_api.url}/healthz", timeout=1)[0] == 200  # alive, just not ready

        # Each answers within the request's database deadline (2.5 s), well inside the client's 6 s.
        for path in ("/user-logs?userId=user-1", "/user-logs", "/user-logs/aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", "/readyz"):
            status, body, _ = http_json(f"{live_api.url}{path}", headers=live_auth_header, timeout=6)
            assert status == 503, path
            assert "Traceback" not in json.dumps(body) and "MONGODB_URI" not in json.dumps(body)
        assert set(http_json(f"{live_api.url}/user-logs", headers=live_auth_header, timeout=6)[1]) == {"detail"}
    finally:
        if not mongodb_server.running:
            mongodb_server.start()

    wait_for(lambda: http_json(f"{live_api.url}/readyz")[0] == 200, timeout=30, message="/readyz to recover")
    status, body, _ = http_json(f"{live_api.url}/user-logs?userId=user-1", headers=live_auth_header)
    assert status == 200 and body["count"] == 23


def test_a_stalled_database_is_a_503_or_504_within_the_deadline_and_then_served_again(live_api, mongodb_server,
                                                                                     live_auth_header):
    """SIGSTOP: the server keeps its connections and answers nothing, so no query can finish in time."""
    assert http_json(f"{live_api.url}/user-logs?userId=user-1", headers=live_auth_header)[0] == 200
    with frozen(mongodb_server):
        for path in ("/user-logs?userId=user-1&action=send", "/user-logs", "/readyz"):
            status, body, _ = http_json(f"{live_api.url}{path}", headers=live_auth_header, timeout=6)
            assert status in (503, 504), path
        assert http_json(f"{live_api.url}/healthz", timeout=1)[0] == 200
    wait_for(lambda: http_json(f"{live_api.url}/user-logs?userId=user-1", headers=live_auth_header)[0] == 200, timeout=30,
             message="the API to serve again once the database answers")


def test_requests_queued_behind_a_stalled_database_are_answered_within_one_deadline(mongodb_server, log_dir, auth_database,
                                                                                      live_auth_header):
    """One worker with two threads and a 1 s deadline; ten requests at once while the database answers nothing.
    Their deadline counts from their arrival, so the last waits one deadline, not five (one per pair ahead)."""
    server = ProductionApi(f"mongodb://{processes.HOST}:{mongodb_server.port}/test_live_queue", log_dir,
                           database_url=auth_database.url, GUNICORN_WORKERS="1", API_WORKER_THREADS="2",
                           API_DATABASE_TIMEOUT_MS="1000")
    try:
        # The first request also warms the worker (imports, the accounts database), which on a loaded
        # machine can take longer than this server's 1 s deadline: served before the database freezes.
        wait_for(lambda: server.get("/user-logs?userId=user-1", headers=live_auth_header)[0] == 200, timeout=30,
                 message="the API to serve before the database freezes")

        def timed(_):
            started = time.monotonic()
            status, body, _ = server.get("/user-logs?userId=user-1", headers=live_auth_header, timeout=10)
            return status, body, time.monotonic() - started

        with frozen(mongodb_server), ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(timed, range(10)))
            assert http_json(f"{server.url}/healthz", timeout=1)[0] == 200
        assert {status for status, _, _ in answers} <= {503, 504}, answers
        assert all(set(body) == {"detail"} for _, body, _ in answers)
        assert max(seconds for _, _, seconds in answers) < 2.0, answers
        assert any(body["detail"].startswith("The API is too busy") for _, body, _ in answers), answers
    finally:
        server.stop()
