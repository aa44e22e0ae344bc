"""The production serving command against slow and malformed clients, and its security settings.

Every server here is started exactly as the image starts it (conftest.PRODUCTION_API_COMMAND) on the
real local database.
"""

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import PRODUCTION_API_COMMAND, ROOT, ProductionApi, wait_for
from pymongo import MongoClient

from stack import processes

pytestmark = pytest.mark.integration

SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
                    "Cross-Origin-Opener-Policy": "same-origin"}
SLOW_CLIENTS = 100
USER_LOGS = 30


@pytest.fixture(scope="module")
def database_uri(mongodb_server):
    """A database with USER_LOGS logs of user-1 and as many of others."""
    from logs.pipeline.generator import generate_activity
    from logs.storage.documents import ActivityLog

    name = f"test_serving_{uuid.uuid4().hex[:10]}"
    uri = f"mongodb://{processes.HOST}:{mongodb_server.port}/{name}"
    events = itertools.islice(generate_activity(users=2, seed=3), 2 * USER_LOGS)
    with MongoClient(uri, tz_aware=True) as client:
        client[name]["activity_logs"].insert_many([ActivityLog.mongo_document(event) for event in events])
        user_logs = client[name]["activity_logs"].count_documents({"userId": "user-1"})
    yield uri, user_logs
    with MongoClient(uri) as client:
        client.drop_database(name)


@pytest.fixture(scope="module")
def patient_api(database_uri, log_dir, auth_database):
    server = ProductionApi(database_uri[0], log_dir, database_url=auth_database.url)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def strict_api(database_uri, log_dir, auth_database):
    server = ProductionApi(database_uri[0], log_dir, database_url=auth_database.url, GUNICORN_WORKERS="1",
                           DJANGO_SECURE_SSL_REDIRECT="true", DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
                           DJANGO_SECURE_HSTS_SECONDS="31536000", API_MAX_BODY_BYTES="4096")
    yield server
    server.stop()


def connect(api, source=processes.HOST):
    return socket.create_connection((processes.HOST, api.port), timeout=10, source_address=(source, 0))


def still_open(sock):
    """True until the server closes the connection (an answer may have arrived on it)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def read_until_closed(sock):
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def raw_answer(api, request):
    """(status, headers as a dict, body) of what the server sends back to raw request bytes."""
    with connect(api) as sock:
        sock.sendall(request)
        head, _, body = read_until_closed(sock).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, body


# --- slow clients -----------------------------------------------------------------------------------

def test_100_slow_clients_do_not_stop_liveness_or_queries(patient_api, database_uri, live_auth_header):
    """Half send their headers byte by byte and never finish; half finish them and trickle a body, which
    is read on the event loop before any thread takes the request. They come from another address than
    the probe and the query: from one address, those in flight beyond its share are refused
    (tests/test_fairness.py)."""
    # Served once before (a worker's first request on a loaded machine is slower than what is tested here).
    wait_for(lambda: patient_api.get("/user-logs?userId=user-1", headers=live_auth_header)[0] == 200, timeout=30,
             message="a first query")
    stop = threading.Event()
    sockets = []
    try:
        for number in range(SLOW_CLIENTS):
            sock = connect(patient_api, source="127.0.0.2")
            if number % 2:
                sock.sendall(b"GET /user-logs?userId=user-1 HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            else:
                sock.sendall(b"POST /user-logs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 10000\r\n\r\n{")
            sockets.append(sock)

        def trickle():
            while not stop.wait(0.2):
                for sock in sockets:
                    try:
                        sock.send(b"a")
                    except OSError:
                        pass

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()

        assert wait_for(lambda: patient_api.get("/healthz", timeout=2)[0] == 200, timeout=10,
                        message="/healthz while 100 slow clients are connected")
        status, body, _ = patient_api.get("/user-logs?userId=user-1&limit=100", headers=live_auth_header, timeout=10)
        assert status == 200 and body["count"] == database_uri[1], body
        assert sum(still_open(sock) for sock in sockets) == SLOW_CLIENTS, "the slow clients were not all held"
    finally:
        stop.set()
        for sock in sockets:
            sock.close()


# --- limits at the edge: JSON refusals with the security headers ---------------------------------------

@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /user-logs?userId=" + b"u" * 5000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 414),
    (b"GET /user-logs HTTP/1.1\r\nHost: localhost\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(101)) + b"\r\n",
     431),
    (b"GET /user-logs HTTP/1.1\r\nHost: localhost\r\nCookie: " + b"c" * 20000 + b"\r\n\r\n", 431),
    (b"POST /api-auth/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000, 413),
])
def test_requests_over_the_limits_get_a_json_4xx_with_the_security_headers(strict_api, request_bytes, status):
    answered, headers, body = raw_answer(strict_api, request_bytes)
    assert answered == status
    assert headers["content-type"] == "application/json" and b'"detail"' in body
    assert {name.lower(): value for name, value in SECURITY_HEADERS.items()}.items() <= headers.items()


@pytest.mark.parametrize("method, path, headers, status", [
    ("GET", "/healthz", {}, 200),
    ("HEAD", "/healthz", {}, 200),
    ("GET", "/readyz", {}, 200),
    ("GET", "/user-logs?limit=0", {}, 401),
    ("GET", "/no-such-page", {}, 404),
    ("POST", "/user-logs", {}, 401),  # authentication comes first; with a token it is 405
    ("POST", "/healthz", {}, 405),
    ("GET", "/user-logs", {"Host": "evil.example"}, 400),
    ("GET", "/healthz", {"Host": "evil.example"}, 200),  # answered before Django: kubelet sends the pod's IP
    ("POST", "/readyz", {}, 405),
    ("DELETE", "/no-such-page", {}, 404),
])
def test_every_answer_carries_the_security_headers_and_every_error_is_json(patient_api, method, path, headers, status):
    request = (f"{method} {path} HTTP/1.1\r\nHost: {headers.get('Host', 'localhost')}\r\nContent-Length: 0\r\n"
               "Connection: close\r\n\r\n")
    answered, received, body = raw_answer(patient_api, request.encode())
    assert answered == status
    assert {name.lower(): value for name, value in SECURITY_HEADERS.items()}.items() <= received.items()
    if status >= 400:
        assert received["content-type"] == "application/json" and set(json.loads(body)) == {"detail"}


def plain_request(path, **headers):
    lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Connection: close",
             *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_behind_a_tls_proxy_plain_http_is_redirected_except_the_probes_and_https_gets_hsts(strict_api,
                                                                                          live_auth_header):
    status, headers, _ = raw_answer(strict_api, plain_request("/user-logs"))
    assert status == 301 and headers["location"] == "https://localhost/user-logs"
    assert raw_answer(strict_api, plain_request("/healthz"))[0] == 200
    assert raw_answer(strict_api, plain_request("/readyz"))[0] == 200

    secure = plain_request("/user-logs", **{"X-Forwarded-Proto": "https"}, **live_auth_header)
    status, headers, _ = raw_answer(strict_api, secure)
    assert status == 200 and headers["strict-transport-security"] == "max-age=31536000"


# --- production settings ----------------------------------------------------------------------------

# What docs/operations.md "Behind TLS" documents for a deployment behind a TLS proxy.
PRODUCTION_SETTINGS = {
    "DJANGO_SECRET_KEY": uuid.uuid4().hex * 2,
    "DJANGO_ALLOWED_HOSTS": "api.example.com",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    "DJANGO_SECURE_SSL_REDIRECT": "true",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "DJANGO_SECURE_HSTS_PRELOAD": "true",
    "DJANGO_SECURE_COOKIES": "true",
}


def deploy_check(**environment):
    env = {name: value for name, value in os.environ.items() if not name.startswith("DJANGO_")}
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                          env={**env, **environment}, capture_output=True, text=True, timeout=60)


def test_check_deploy_is_clean_with_the_documented_production_settings():
    result = deploy_check(**PRODUCTION_SETTINGS)
    assert result.returncode == 0, result.stderr


def test_check_deploy_flags_the_development_secret_key():
    result = deploy_check(**{**PRODUCTION_SETTINGS, "DJANGO_SECRET_KEY": ""})
    assert result.returncode != 0 and "security.W009" in result.stderr


@pytest.mark.parametrize("secret_key", [None, "change-me-to-a-long-random-string"])
def test_the_production_server_refuses_to_start_with_the_published_or_a_weak_secret_key(secret_key, tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith("DJANGO_")}
    if secret_key is not None:
        env["DJANGO_SECRET_KEY"] = secret_key
    env["GUNICORN_BIND"] = f"{processes.HOST}:{processes.free_port()}"
    env["API_METRICS_PORT"] = "0"
    command = [str(Path(sys.executable).with_name(PRODUCTION_API_COMMAND[0])), *PRODUCTION_API_COMMAND[1:]]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Refusing to start: DJANGO_SECRET_KEY" in result.stderr


def test_a_static_asset_longer_than_one_piece_is_streamed_whole(patient_api):
    """Swagger UI's bundle (1.5 MB) is longer than threaded_wsgi.STREAM_AFTER_BYTES, so it leaves in chunks."""
    import drf_spectacular_sidecar

    from activity_service.threaded_wsgi import STREAM_AFTER_BYTES

    bundle = "static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    asset = Path(drf_spectacular_sidecar.__file__).parent / bundle
    expected = asset.read_bytes()
    assert len(expected) > 2 * STREAM_AFTER_BYTES
    with urllib.request.urlopen(f"{patient_api.url}/{bundle}",
                                timeout=10) as response:
        assert response.status == 200 and response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.read() == expected
