"""One client address cannot take more than its share (docs/contract.md "API"), on the production serving command.

The hostile client and the well-behaved one use two loopback addresses (127.0.0.2 and 127.0.0.1), so the
server tells them apart exactly as it tells two hosts apart.
"""

import socket
import time

import pytest

from bench.flood import FairnessProbe, Flood
from stack import processes
from tests.support.databases import own_database
from tests.support.http import http_json
from tests.support.servers import ProductionApi
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FLOOD_CONNECTIONS = 2100
FLOOD_SECONDS = 30
SHARE = 2
BURST = 3


@pytest.fixture(scope="module")
def database_uri(mongodb_server):
    with own_database(mongodb_server, "test_fairness") as uri:
        yield uri


@pytest.fixture(scope="module")
def production_api(database_uri, log_dir, auth_database):
    """As deployed: default shares, 2 workers."""
    server = ProductionApi(database_uri, log_dir, database_url=auth_database.url)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def small_share_api(database_uri, log_dir, auth_database):
    """One worker, SHARE requests at once and BURST at a rate of one a second per client; 127.0.0.3 is a
    trusted proxy."""
    server = ProductionApi(database_uri, log_dir, database_url=auth_database.url, GUNICORN_WORKERS="1",
                           API_CLIENT_MAX_REQUESTS=str(SHARE), API_CLIENT_RATE_PER_SECOND="1",
                           API_CLIENT_BURST=str(BURST), API_TRUSTED_PROXIES="127.0.0.3")
    yield server
    server.stop()


def get_from(api, path, source, headers=None):
    """(status, response headers) of one GET sent from the loopback address `source`."""
    with socket.create_connection((processes.HOST, api.port), timeout=10, source_address=(source, 0)) as sock:
        lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Connection: close",
                 *(f"{name}: {value}" for name, value in (headers or {}).items())]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return int(head[0].split()[1]), {line.split(": ", 1)[0].lower(): line.split(": ", 1)[1] for line in head[1:]}


def test_one_address_flooding_2100_idle_connections_leaves_probes_and_queries_to_others(production_api,
                                                                                       live_auth_header):
    probes = [f"{production_api.probe_url}/healthz", f"{production_api.probe_url}/readyz"]
    with Flood(processes.HOST, production_api.port, source="127.0.0.2", connections=FLOOD_CONNECTIONS) as flood:
        wait_for(lambda: flood.opened >= FLOOD_CONNECTIONS, timeout=30, message="the flood's connections")
        with FairnessProbe(production_api.probe_url, ["/healthz", "/readyz"]) as kubelet, \
                FairnessProbe(production_api.url, ["/user-logs?userId=user-1", "/healthz"],
                              headers=live_auth_header) as client:
            time.sleep(FLOOD_SECONDS)
    for observer in (kubelet, client):
        good, asked = observer.served()
        assert asked >= FLOOD_SECONDS and good >= 0.9 * asked, (probes, observer.answers[-10:])
    assert flood.opened >= FLOOD_CONNECTIONS


def test_the_probe_port_answers_only_the_probes(production_api):
    assert http_json(f"{production_api.probe_url}/healthz")[0] == 200
    assert http_json(f"{production_api.probe_url}/readyz")[0] == 200
    status, body, _ = http_json(f"{production_api.probe_url}/user-logs")
    assert status == 404 and set(body) == {"detail"}


def test_a_client_over_its_share_of_requests_in_flight_gets_503_while_another_is_served(small_share_api):
    """SHARE requests from 127.0.0.4 held in flight (their bodies never finish); its next one is refused."""
    held = []
    try:
        for _ in range(SHARE):
            sock = socket.create_connection((processes.HOST, small_share_api.port), timeout=10,
                                            source_address=("127.0.0.4", 0))
            sock.sendall(b"POST /api-auth/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{")
            held.append(sock)
        status, headers = wait_for(lambda: (lambda answer: answer[0] == 503 and answer)(
            get_from(small_share_api, "/readyz", "127.0.0.4")), timeout=10, message="the over-share 503")
        assert headers["retry-after"] == "1" and headers["content-type"] == "application/json"
        assert get_from(small_share_api, "/readyz", "127.0.0.5")[0] == 200
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: get_from(small_share_api, "/readyz", "127.0.0.4")[0] == 200, timeout=10,
             message="the client's share back once its requests ended")


def test_a_client_over_its_rate_gets_429_with_retry_after_while_another_is_served(small_share_api):
    statuses = [get_from(small_share_api, "/readyz", "127.0.0.6")[0] for _ in range(BURST)]
    status, headers = get_from(small_share_api, "/readyz", "127.0.0.6")
    assert statuses == [200] * BURST and status == 429 and int(headers["retry-after"]) >= 1
    assert get_from(small_share_api, "/readyz", "127.0.0.7")[0] == 200


def test_x_forwarded_for_names_the_client_only_from_a_trusted_proxy(small_share_api):
    """From the trusted proxy (127.0.0.3) each forwarded address has its own share; from anyone else the
    header is ignored, so a client cannot escape its share by writing it."""
    for number in range(BURST + 1):
        assert get_from(small_share_api, "/readyz", "127.0.0.3", {"X-Forwarded-For": f"198.51.100.{number}"})[0] == 200
    spoofed = [get_from(small_share_api, "/readyz", "127.0.0.8", {"X-Forwarded-For": f"203.0.113.{number}"})[0]
               for number in range(BURST + 1)]
    assert spoofed == [200] * BURST + [429]
