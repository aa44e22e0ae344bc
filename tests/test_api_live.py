"""The API as a real server process: schemathesis against its own OpenAPI schema, and /readyz through an outage."""

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pymongo import MongoClient
from schemathesis.specs.openapi.checks import positive_data_acceptance

from conftest import ROOT, http_response, wait_for
from stack import processes
from test_api import ACTIONS, START, activity_event, store

pytestmark = pytest.mark.integration


def http_get(url, *, headers=None, timeout=10):
    """(status, parsed JSON or text) without raising on 4xx/5xx."""
    status, response_headers, body = http_response(url, headers=headers, timeout=timeout)
    return status, json.loads(body) if "json" in response_headers.get("Content-Type", "") else body.decode()


class LiveApi:
    """`manage.py runserver --noreload` on a free port, DEBUG off, talking to one test database and
    to the accounts in `database_url`."""

    def __init__(self, mongodb_uri, log_path, *, database_url, environment=None):
        self.port = processes.free_port()
        self.url = f"http://{processes.HOST}:{self.port}"
        env = {**os.environ, "MONGODB_URI": mongodb_uri, "MONGODB_SERVER_SELECTION_TIMEOUT_MS": "1000",
               "DJANGO_DEBUG": "false", "PYTHONUNBUFFERED": "1", "DATABASE_URL": database_url, **(environment or {})}
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload", f"{processes.HOST}:{self.port}"],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.log_path = log_path
        wait_for(self.answers, timeout=30, message=f"the API on {self.url} (log: {log_path})")

    def answers(self):
        if self.process.poll() is not None:
            raise AssertionError(f"runserver exited: {self.log_path.read_text()[-2000:]}")
        return processes.port_open(self.port) and http_get(f"{self.url}/healthz")[0] == 200

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def live_api(mongodb_server, log_dir, auth_database):
    """A live server over 45 stored logs (user-1 and user-2, every action, one a minute)."""
    name = f"test_live_{uuid.uuid4().hex[:10]}"
    uri = f"mongodb://{processes.HOST}:{mongodb_server.port}/{name}"
    with MongoClient(uri, tz_aware=True) as client:
        events = [activity_event(user_id=f"user-{minute % 2 + 1}", action=ACTIONS[minute % 3],
                                 at=START + timedelta(minutes=minute)) for minute in range(45)]
        store(client[name]["activity_logs"], events)
    server = LiveApi(uri, log_dir / f"runserver-{name}.log", database_url=auth_database.url)
    yield server
    server.stop()
    with MongoClient(uri) as client:
        client.drop_database(name)


def test_no_request_the_schema_allows_gets_a_server_error_or_an_undocumented_answer(live_api, live_auth_header):
    """Property-based: schemathesis generates valid and invalid requests from /api/schema/ for each operation,
    sent with an all-users token (its checks also send some without it, which must be a documented 401)."""
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
    assert http_get(f"{live_api.url}/readyz") == (200, {"status": "ok"})
    mongodb_server.stop()
    try:
        status, body = wait_for(lambda: (lambda answer: answer[0] == 503 and answer)(http_get(f"{live_api.url}/readyz")),
                                timeout=20, message="/readyz to report the outage")
        assert body["status"] == "unavailable" and "MongoDB unreachable" in body["reason"]
        assert http_get(f"{live_api.url}/healthz")[0] == 200  # alive, just not ready

        status, body = http_get(f"{live_api.url}/user-logs?userId=user-1", headers=live_auth_header)
        assert status == 503 and set(body) == {"detail"}
        assert "Traceback" not in json.dumps(body) and "MONGODB_URI" not in json.dumps(body)
    finally:
        if not mongodb_server.running:
            mongodb_server.start()

    wait_for(lambda: http_get(f"{live_api.url}/readyz")[0] == 200, timeout=30, message="/readyz to recover")
    status, body = http_get(f"{live_api.url}/user-logs?userId=user-1", headers=live_auth_header)
    assert status == 200 and body["count"] == 23
