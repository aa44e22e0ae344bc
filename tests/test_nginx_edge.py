"""docker-compose's proxy (deploy/nginx/nginx.conf, Debian's nginx) as a real process in front of the
production serving command: the flood, its JSON refusals, and the client address it hands the API.

The configuration file is the one the image ships; only the upstream (`api:8000`), the listen address and
the /tmp/nginx folder are replaced for this machine.
"""

import json
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from bench.flood import FairnessProbe, Flood
from stack import processes
from tests.support import ROOT
from tests.support.databases import own_database
from tests.support.servers import ProductionApi
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

# Debian's nginx, installed by stack/install-system-packages.sh (make test, .ci/run).
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "same-origin",
                    "cross-origin-opener-policy": "same-origin"}
FLOOD_CONNECTIONS = 2100
FLOOD_SECONDS = 30
BAD_TOKEN_LIMIT = 3


class Nginx:
    """deploy/nginx/nginx.conf run by Debian's nginx on a free port, proxying to `upstream_port`."""

    def __init__(self, folder, upstream_port, log_dir):
        self.port = processes.free_port()
        self.url = f"http://{processes.HOST}:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        config = (ROOT / "deploy/nginx/nginx.conf").read_text()
        for original, replacement in (("/tmp/nginx", str(folder)),
                                      ("server api:8000;", f"server {processes.HOST}:{upstream_port};"),
                                      ("listen 8080 default_server;",
                                       f"listen {processes.HOST}:{self.port} default_server;")):
            assert original in config, original
            config = config.replace(original, replacement)
        (folder / "nginx.conf").write_text(config)
        self.log_path = log_dir / f"nginx-{uuid.uuid4().hex[:6]}.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"),
                                             "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: processes.port_open(self.port), timeout=10, message=f"nginx (log: {self.log_path})")

    def stop(self):
        processes.terminate(self.process, timeout=10)


def raw_answer(port, request, source=processes.HOST):
    """(status, lower-cased headers, body) of the answer to raw request bytes."""
    with socket.create_connection((processes.HOST, port), timeout=15, source_address=(source, 0)) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


def get(path, **headers):
    lines = [f"GET {path} HTTP/1.1", f"Host: {headers.pop('Host', 'localhost')}", "Connection: close",
             *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture(scope="module")
def database_uri(mongodb_server):
    with own_database(mongodb_server, "test_nginx") as uri:
        yield uri


@pytest.fixture(scope="module")
def api_behind_nginx(database_uri, log_dir, auth_database, tmp_path_factory):
    """The production server trusting the proxy's address (127.0.0.1) for X-Forwarded-For, nginx in front."""
    api = ProductionApi(database_uri, log_dir, database_url=auth_database.url, API_TRUSTED_PROXIES=processes.HOST,
                        API_BAD_TOKEN_LIMIT=str(BAD_TOKEN_LIMIT))
    proxy = Nginx(tmp_path_factory.mktemp("nginx"), api.port, log_dir)
    yield api, proxy
    proxy.stop()
    api.stop()


def test_through_nginx_one_address_flooding_2100_idle_connections_leaves_others_served(api_behind_nginx,
                                                                                      live_auth_header):
    api, proxy = api_behind_nginx
    with Flood(processes.HOST, proxy.port, source="127.0.0.2", connections=FLOOD_CONNECTIONS) as flood:
        wait_for(lambda: flood.opened >= FLOOD_CONNECTIONS, timeout=30, message="the flood's connections")
        with FairnessProbe(api.probe_url, ["/healthz", "/readyz"]) as kubelet, \
                FairnessProbe(proxy.url, ["/user-logs?userId=user-1", "/healthz"], headers=live_auth_header) as client:
            time.sleep(FLOOD_SECONDS)
    for observer in (kubelet, client):
        good, asked = observer.served()
        assert asked >= FLOOD_SECONDS and good >= 0.9 * asked, observer.answers[-10:]


@pytest.mark.parametrize("request_bytes, status", [
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
    (get("/user-logs?userId=" + "u" * 9000), 414),
    (get("/user-logs", Cookie="c" * 40000), 431),
    (b"POST /api-auth/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n", 413),
])
def test_nginx_refuses_in_json_with_the_security_headers(api_behind_nginx, request_bytes, status):
    _, proxy = api_behind_nginx
    answered, headers, body = raw_answer(proxy.port, request_bytes)
    assert answered == status and headers["content-type"] == "application/json" and set(json.loads(body)) == {"detail"}
    assert SECURITY_HEADERS.items() <= headers.items()


def test_nginx_answers_json_503_with_retry_after_when_the_api_is_not_there(tmp_path, log_dir):
    proxy = Nginx(tmp_path / "nginx", processes.free_port(), log_dir)
    try:
        status, headers, body = raw_answer(proxy.port, get("/user-logs"))
    finally:
        proxy.stop()
    assert status == 503 and headers["retry-after"] and json.loads(body)["detail"].startswith("The API is unavailable")
    assert SECURITY_HEADERS.items() <= headers.items()


def test_the_api_behind_nginx_answers_errors_as_json_through_it(api_behind_nginx):
    _, proxy = api_behind_nginx
    post = b"POST /readyz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    for request, status in ((get("/user-logs", Host="evil.example"), 400), (get("/no-such-page"), 404), (post, 405)):
        answered, headers, body = raw_answer(proxy.port, request)
        assert answered == status and set(json.loads(body)) == {"detail"}
        assert json.loads(body)["detail"] != "Invalid HTTP request.", "nginx's own 400, not the API's"
        assert SECURITY_HEADERS.items() <= headers.items()


def test_the_api_sees_each_client_behind_nginx_and_not_what_a_client_writes_in_x_forwarded_for(api_behind_nginx,
                                                                                               live_auth_header):
    """Unknown tokens lock out the address that sent them (API_BAD_TOKEN_LIMIT): through nginx that is the
    client's own address, whatever X-Forwarded-For it wrote, and never the proxy's, which all clients share.

    Each gunicorn worker counts in its own memory (docs/contract.md "Access control"), and either may take
    a request, so the lockout is certain only once every worker could have seen the limit; a fresh address
    written in X-Forwarded-For each time would never be locked out.
    """
    api, proxy = api_behind_nginx
    bad = {"Authorization": "Token " + "0" * 40}
    statuses = []
    while 429 not in statuses and len(statuses) <= api.workers * BAD_TOKEN_LIMIT:
        statuses.append(raw_answer(proxy.port, get("/user-logs", **bad,
                                                   **{"X-Forwarded-For": f"203.0.113.{len(statuses)}"}),
                                   source="127.0.0.9")[0])
    assert statuses[:BAD_TOKEN_LIMIT] == [401] * BAD_TOKEN_LIMIT and statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {401}, statuses
    assert raw_answer(proxy.port, get("/user-logs?userId=user-1", **live_auth_header), source="127.0.0.10")[0] == 200
