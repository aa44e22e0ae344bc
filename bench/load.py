"""Load benchmark of the API's edge: the deployed serving command and the stock candidates, side by side.

    python -m bench.load                  # or: make bench-load (needs Debian's wrk and nginx)
    python -m bench.load --seconds 5      # shorter levels
    python -m bench.load --only deployed,granian
    python -m bench.load --only deployed,before --only-cost   # step 5 alone
    python -m bench.load --only deployed,before,floor,bare --only-cost   # ... and the floors under the own cost

Starts SecantusDB on the data folder of bench/api (200,000 generated logs, inserted once and reused), then
every serving model in MODELS at once (2 workers or processes each, the same settings, every request with
an all-users token, so authentication, the throttle and the audit line are in every figure), and measures,
each measurement over every model in turn before the next:
1. slow clients: 60 connections from 127.0.0.2 holding half-sent heads and trickled bodies while /healthz
   and a query are asked from 127.0.0.1;
2. the flood: 2,100 idle connections from 127.0.0.2, reopened as the server closes them, for FLOOD_SECONDS,
   while 127.0.0.1 asks /healthz (the probe port where the model has one) and a query every 0.25 s: the share
   answered 200 within 2 s;
3. for 10, 50 and 100 connections, wrk running a mix of documented queries (userId; userId+action;
   userId+from/to; one log by id) for SECONDS: throughput, p50/p99, errors, and /healthz latency sampled
   every 100 ms on a new connection per probe, as kubelet does; throughput over the raw driver's (pymongo
   threads, the same queries, page and count, the same concurrency, measured in the same run);
4. a database outage: 50 connections for 10 s with the database stopped: every answer's status and the
   slowest, /healthz latency, and how long the API takes to serve again once the database is back;
5. the API's own cost per request at 5,000 logs (its median minus the raw driver's, one request at a time
   over a keep-alive connection) for get-by-id and userId+action, in rounds over every model, and the
   floor under any answer (/healthz; an unrouted 404 through Django). `--only-cost` runs this step alone.
   The "floor" and "bare" rows (step 5 only) read with the raw driver's own calls, with and without the
   API's own layers (bench/floor_api.py): what the API's own cost cannot fall below on this stack.
Everything listens and connects on loopback addresses only, and every step is bounded in time.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from bench.api import DATA, bench_token, fill, prepare_accounts_database, run_workers, sequential_median_ms
from bench.flood import FairnessProbe, Flood
from bench.ingest import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
FLOODER = "127.0.0.2"
LARGE, SMALL = 200_000, 5_000
LEVELS = (10, 50, 100)
OUTAGE_CONNECTIONS, OUTAGE_SECONDS = 50, 10
SLOW_CLIENTS = 60
FLOOD_CONNECTIONS, FLOOD_SECONDS = 2100, 20
PROBE_INTERVAL = 0.1
COST_SAMPLES, COST_ROUNDS = 200, 9
WARM_UP_REQUESTS = 50  # per model once it serves, so no measurement meets a worker's first requests
USERS_IN_MIX = 200
IDS_IN_MIX = 200
RANGE = ("2026-10-05T00:00:00Z", "2026-10-20T00:00:00Z")
NEWEST_FIRST = [("timestamp", -1), ("_id", -1)]
AUTHORIZATION = None  # `Token <key>` of the benchmark's all-users account, set in main()
# Serving: one query answered. Not /readyz: its layout check reads one stored log with an empty filter,
# which SecantusDB answers by reading the whole collection (seconds at 200,000 logs, past the deadline).
SERVING_PATH = "/user-logs?userId=user-1&limit=1"
# The edge this change replaced (uvicorn's protocol subclassed, a2wsgi's internals), run from its git revision.
EDGE_BEFORE = "dba0acb"
# Limits no load of this benchmark reaches, so that they run without refusing it: the throttle, the
# per-client share (every wrk connection comes from 127.0.0.1) and nginx's per-client limits.
UNREACHED_LIMITS = {"API_THROTTLE_RATE": "1000000/second", "API_CLIENT_MAX_REQUESTS": "100000",
                    "API_CLIENT_RATE_PER_SECOND": "1000000", "API_CLIENT_BURST": "1000000"}
def query_mix(collection):
    """(label, API path, raw driver call) for each request of the mix; ids are sampled from the data."""
    from datetime import datetime

    from bson import ObjectId

    start, end = (datetime.fromisoformat(bound.replace("Z", "+00:00")) for bound in RANGE)
    ids = [document["_id"] for document in collection.find({}, {"_id": 1}).limit(IDS_IN_MIX)]

    def page(query):
        def call():
            list(collection.find(query).sort(NEWEST_FIRST).limit(10))
            collection.count_documents(query)
        return call

    mix = []
    for user in range(1, USERS_IN_MIX + 1):
        user_id = f"user-{user}"
        mix.append(("userId", f"/user-logs?userId={user_id}", page({"userId": user_id})))
        mix.append(("userId+action", f"/user-logs?userId={user_id}&action=send",
                    page({"userId": user_id, "action": "send"})))
        mix.append(("userId+from/to", f"/user-logs?userId={user_id}&from={RANGE[0]}&to={RANGE[1]}",
                    page({"userId": user_id, "timestamp": {"$gte": start, "$lte": end}})))
    for document_id in ids:
        text = str(document_id)
        mix.append(("by id", f"/user-logs/{text}",
                    lambda document_id=document_id: collection.find_one({"_id": document_id})))
    assert all(isinstance(document_id, (ObjectId, str)) for document_id in ids)
    return mix


# --- the servers --------------------------------------------------------------------------------------

def executable(name):
    return str(Path(sys.executable).with_name(name))


class Server:
    """One serving model as a process on free loopback ports: `command(port, probe_port)` in `cwd`."""

    def __init__(self, name, command, *, mongodb_uri, log_dir, cwd=ROOT, probes=True, environment=None):
        from stack import processes

        self.name = name
        self.port, self.probe_port = processes.free_port(), processes.free_port() if probes else None
        self.url = f"http://{HOST}:{self.port}"
        self.probe_url = f"http://{HOST}:{self.probe_port}" if probes else self.url
        self.metrics_dir = tempfile.mkdtemp(prefix="bench-load-metrics-")
        env = {**os.environ, **UNREACHED_LIMITS, "MONGODB_URI": mongodb_uri, "GUNICORN_BIND": f"{HOST}:{self.port}",
               "GUNICORN_WORKERS": "2", "API_PROBE_PORT": str(self.probe_port or 0), "API_METRICS_PORT": "0",
               "LOG_LEVEL": "WARNING", "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir, "DJANGO_DEBUG": "false",
               "DJANGO_SECRET_KEY": uuid.uuid4().hex * 2, "DJANGO_SETTINGS_MODULE": "activity_service.settings",
               "PYTHONPATH": str(cwd), **(environment or {})}
        self.log_path = log_dir / f"bench-load-{name}.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command(self.port, self.probe_port), cwd=cwd, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)
        self.processes = [self.process]

    def wait_ready(self):
        wait_serving(self, timeout=90)
        return self

    def stop(self):
        from stack import processes

        processes.terminate(self.process, timeout=30)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


class NginxInFront:
    """deploy/nginx/nginx.conf run by Debian's nginx in front of `api` (the deployed model): its per-client
    limits raised past this benchmark's load from one address (the flood from 127.0.0.2 meets them as shipped
    only in tests/test_nginx_edge.py), everything else as the image ships it."""

    def __init__(self, api, log_dir):
        from stack import processes

        self.api, self.name = api, "nginx"
        self.port = processes.free_port()
        self.url, self.probe_url = f"http://{HOST}:{self.port}", api.probe_url
        self.folder = Path(tempfile.mkdtemp(prefix="bench-load-nginx-"))
        config = (ROOT / "deploy/nginx/nginx.conf").read_text()
        for original, replacement in (("/tmp/nginx", str(self.folder)),
                                      ("server api:8000;", f"server {HOST}:{api.port};"),
                                      ("listen 8080 default_server;", f"listen {HOST}:{self.port} default_server;"),
                                      ("limit_conn per_client_requests 16;", "limit_conn per_client_requests 60000;"),
                                      ("rate=100r/s", "rate=1000000r/s")):
            config = config.replace(original, replacement)
        (self.folder / "nginx.conf").write_text(config)
        self.log_path = log_dir / "bench-load-nginx.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(self.folder), "-c",
                                             str(self.folder / "nginx.conf"), "-g", "daemon off;"], stdout=log,
                                            stderr=subprocess.STDOUT)
        self.processes = [self.process, api.process]

    def wait_ready(self):
        self.api.wait_ready()
        wait_serving(self, timeout=30)
        return self

    def stop(self):
        from stack import processes

        processes.terminate(self.process, timeout=10)
        self.api.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def before_tree():
    """The tree of EDGE_BEFORE (app, settings, gunicorn.conf.py), unpacked once into .data."""
    folder = DATA.parent / f"bench-load-edge-{EDGE_BEFORE}"
    if not (folder / "gunicorn.conf.py").exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", EDGE_BEFORE, "activity_service", "logs", "manage.py",
                                  "gunicorn.conf.py"], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


GUNICORN = [executable("gunicorn"), "--config", "gunicorn.conf.py"]
# Rows of step 5 alone: the floors serve the deployed edge, so steps 1 to 4 would measure that edge again.
COST_ONLY = {"floor", "bare"}
MODELS = {
    "deployed": dict(command=lambda port, probe_port: [*GUNICORN, "activity_service.asgi:application"],
                     label="gunicorn + uvicorn as shipped + our ASGI layers, probe port (deployed)"),
    "before": dict(command=lambda port, probe_port: [*GUNICORN, "activity_service.asgi:application"], probes=False,
                   cwd=before_tree, label=f"the edge before ({EDGE_BEFORE}: uvicorn's protocol subclassed, a2wsgi)"),
    "floor": dict(command=lambda port, probe_port: [*GUNICORN, "activity_service.asgi:application"],
                  environment={"DJANGO_SETTINGS_MODULE": "bench.floor_settings"},
                  label="the deployed model reading with the raw driver's calls (bench/floor_api.py): the floor "
                        "under its own cost"),
    "bare": dict(command=lambda port, probe_port: [*GUNICORN, "activity_service.asgi:application"],
                 environment={"DJANGO_SETTINGS_MODULE": "bench.floor_settings", "BENCH_BARE": "1"},
                 label="the floor without the API's own layers: no middleware, no authentication, throttle or "
                       "audit line (bench/floor_api.py): the fixed stack's floor on this edge"),
    "nginx": dict(label="Debian's nginx (deploy/nginx) in front of the deployed model"),
    "gthread": dict(command=lambda port, probe_port: [*GUNICORN, "--worker-class", "gthread", "--threads", "16",
                                                      "activity_service.wsgi:application"],
                    probes=False, label="gunicorn gthread, 16 threads (WSGI)"),
    "granian": dict(command=lambda port, probe_port: [
        executable("granian"), "--interface", "wsgi", "--workers", "2", "--blocking-threads", "16",
        "--backpressure", "4096", "--http1-header-read-timeout", "10000", "--host", HOST, "--port", str(port),
        "--no-ws", "--log-level", "warning", "activity_service.wsgi:application"],
        probes=False, label="granian WSGI, 16 blocking threads, backpressure 4096, header read timeout 10 s"),
    "hypercorn": dict(command=lambda port, probe_port: [
        executable("hypercorn"), "--workers", "2", "--bind", f"{HOST}:{port}", "--keep-alive", "5",
        "activity_service.wsgi:application"], probes=False, label="hypercorn (WSGI in its thread pool)"),
    "uvicorn": dict(command=lambda port, probe_port: [
        executable("uvicorn"), "--workers", "2", "--host", HOST, "--port", str(port), "--no-server-header",
        "--lifespan", "off", "--log-level", "warning", "--factory", "django.core.asgi:get_asgi_application"],
        probes=False, label="uvicorn as shipped, Django's own ASGI handler"),
}


def start(name, mongodb_uri, log_dir):
    if name == "nginx":
        return NginxInFront(start("deployed", mongodb_uri, log_dir), log_dir)
    model = MODELS[name]
    cwd = model.get("cwd", lambda: ROOT)()
    server = Server(name, model["command"], mongodb_uri=mongodb_uri, log_dir=log_dir, cwd=cwd,
                    probes=model.get("probes", True), environment=model.get("environment"))
    return server


def probe(url, *, timeout, headers=None):
    """(status or None, milliseconds) of one GET on a new connection."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (urllib.error.URLError, OSError):
        status = None
    return status, (time.perf_counter() - started) * 1000


def warm_up(server):
    for _ in range(WARM_UP_REQUESTS):
        serving(server.url)


def serving(url):
    return probe(f"{url}{SERVING_PATH}", timeout=10, headers={"Authorization": AUTHORIZATION})[0]


def wait_serving(server, *, timeout):
    """Until `server` (a row: its url, process, name and log) answers the query with 200; raises if it exits
    or takes longer than `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while serving(server.url) != 200:
        if time.monotonic() > deadline or server.process.poll() is not None:
            raise RuntimeError(f"{server.name} did not become ready; see {server.log_path}")
        time.sleep(0.2)


class HealthProber:
    """Samples /healthz every PROBE_INTERVAL in a thread while a load runs."""

    def __init__(self, url):
        self.url, self.samples, self.failures = f"{url}/healthz", [], 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()

    def run(self):
        while not self.stopping.wait(PROBE_INTERVAL):
            status, elapsed = probe(self.url, timeout=5)
            if status == 200:
                self.samples.append(elapsed)
            else:
                self.failures += 1

    def summary(self):
        if not self.samples:
            return f"/healthz: no answer ({self.failures} failed probes)"
        ordered = sorted(self.samples)
        return (f"/healthz p50 {statistics.median(ordered):.1f} ms, p99 {percentile(ordered, 0.99):.1f} ms, "
                f"max {ordered[-1]:.1f} ms over {len(ordered)} probes, {self.failures} failed")


def percentile(ordered, fraction):
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


# --- wrk ----------------------------------------------------------------------------------------------

WRK_SCRIPT = """
local paths = {%(paths)s}
counts = {}
local threads = {}
local next_id = 1

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(thread_id * 7919)
  wrk.headers["Authorization"] = %(authorization)s
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local statuses = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("counts")) do
      statuses[tostring(status)] = (statuses[tostring(status)] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(statuses) do
    table.insert(parts, string.format('"%%s": %%d', status, count))
  end
  io.write(string.format('RESULT {"requests": %%d, "seconds": %%.3f, "p50_ms": %%.3f, "p99_ms": %%.3f, '
    .. '"max_ms": %%.3f, "socket_errors": %%d, "statuses": {%%s}}\\n', summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ", ")))
end
"""


def run_wrk(url, paths, *, connections, seconds):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"paths": ", ".join(json.dumps(path) for path in paths),
                                   "authorization": json.dumps(AUTHORIZATION)})
    try:
        output = subprocess.run(["wrk", "--threads", "2", "--connections", str(connections),
                                 "--duration", f"{seconds}s", "--timeout", "10s", "--script", script.name, url],
                                capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        os.unlink(script.name)
    return json.loads(output.split("RESULT ", 1)[1].splitlines()[0])


def wrk_line(figures):
    errors = figures["socket_errors"] + sum(count for status, count in figures["statuses"].items()
                                            if not status.startswith("2"))
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(figures["statuses"].items()))
    return (f"{figures['requests'] / figures['seconds']:7.1f} req/s, p50 {figures['p50_ms']:7.1f} ms, "
            f"p99 {figures['p99_ms']:7.1f} ms, errors {errors} ({statuses}; socket errors {figures['socket_errors']})")


# --- the raw driver -----------------------------------------------------------------------------------

def run_raw(mix, *, concurrency, seconds):
    """The mix's raw calls from `concurrency` threads, one at a time each, for `seconds`."""
    latencies, lock, deadline = [], threading.Lock(), time.monotonic() + seconds

    def worker(seed):
        rng, own = random.Random(seed), []
        while time.monotonic() < deadline:
            call = rng.choice(mix)[2]
            started = time.perf_counter()
            call()
            own.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(own)

    elapsed, ordered = run_workers(worker, concurrency), sorted(latencies)
    return len(ordered) / elapsed, statistics.median(ordered), percentile(ordered, 0.99)


# --- per-request cost ---------------------------------------------------------------------------------

def api_call(port, path, status=200):
    """A call of `path` over one keep-alive connection, returning the body. One Host for every model, so that
    the links in their answers are the same."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)

    def call():
        connection.request("GET", path, headers={"Authorization": AUTHORIZATION, "Host": "localhost"})
        response = connection.getresponse()
        body = response.read()
        assert response.status == status, (path, response.status)
        return body
    return call


def rotated(servers, turn):
    """The models in another order each turn, so that no model always runs first after the raw driver."""
    turn %= len(servers)
    return servers[turn:] + servers[:turn]


def cost_paths(collection):
    """(label, API path, expected status, raw driver call or None) of the per-request cost and its floor."""
    document = collection.find_one({"action": "send"})
    user = document["userId"]
    return [
        ("get by id", f"/user-logs/{document['_id']}", 200, lambda: collection.find_one({"_id": document["_id"]})),
        ("userId+action", f"/user-logs?userId={user}&action=send", 200,
         lambda: (list(collection.find({"userId": user, "action": "send"}).sort(NEWEST_FIRST).limit(10)),
                  collection.count_documents({"userId": user, "action": "send"}))),
        # What any answer costs before the API's own code runs: the server alone, then Django's middleware and
        # URL resolution answering an unrouted path (no view, no database).
        ("/healthz", "/healthz", 200, None),
        ("404 through Django", "/no-such-path", 404, None),
    ]


def same_answers(servers, paths):
    """Raises unless every model answers each path of the per-request cost with the same body: the rows
    compare the cost of one answer."""
    for label, path, status, _ in paths:
        bodies = {}
        for server in servers:
            bodies.setdefault(api_call(server.port, path, status)(), []).append(server.name)
        if len(bodies) > 1:
            raise RuntimeError(f"{label}: the models answer differently: {list(bodies.values())}")


def server_cpu_seconds(server):
    """CPU time so far of every process serving `server`'s answers (nginx's and the API's, with children)."""
    return sum(cpu_seconds(process.pid) for process in server.processes)


def per_request_costs(servers, collection):
    """{model: {label: median ms}}, {label: raw median ms}, {model: {label: server CPU ms per request}} and, with
    "before" among the models, {model: {label: each round's own cost over before's}}:
    COST_ROUNDS rounds, every model in each round, the medians of the rounds' figures, so drift on a shared
    machine hits every model alike. The servers' CPU time (from /proc) moves less with the machine's load
    than their answer time."""
    paths = cost_paths(collection)
    same_answers(servers, paths)
    rounds = {server.name: {label: [] for label, *_ in paths} for server in servers}
    cpu = {server.name: {label: [] for label, *_ in paths} for server in servers}
    raw = {label: [] for label, _, _, call in paths if call}
    for number in range(COST_ROUNDS):
        for label, _, _, call in paths:
            if call:
                raw[label].append(sequential_median_ms(call, COST_SAMPLES))
        for server in rotated(servers, number):
            for label, path, status, _ in paths:
                call = api_call(server.port, path, status)
                before = server_cpu_seconds(server)
                rounds[server.name][label].append(sequential_median_ms(call, COST_SAMPLES))
                # sequential_median_ms makes one call more than it times
                cpu[server.name][label].append((server_cpu_seconds(server) - before) * 1000 / (COST_SAMPLES + 1))

    def medians(figures):
        return {name: {label: statistics.median(values) for label, values in labels.items()}
                for name, labels in figures.items()}

    # Each round's own cost over the edge before's, measured in that round: how far one round's ratio strays.
    ratios = {} if "before" not in rounds else {
        name: {label: [(mine - raw[label][number]) / (rounds["before"][label][number] - raw[label][number])
                       for number, mine in enumerate(values)] for label, values in labels.items() if label in raw}
        for name, labels in rounds.items() if name != "before"}
    return (medians(rounds), {label: statistics.median(values) for label, values in raw.items()}, medians(cpu),
            ratios)


# --- slow clients and the flood -----------------------------------------------------------------------

def slow_clients(server, *, query_path):
    """(healthz ok, query ok) while SLOW_CLIENTS connections from FLOODER hold half-sent heads and bodies."""
    sockets = []
    try:
        for number in range(SLOW_CLIENTS):
            sock = socket.create_connection((HOST, server.port), timeout=5, source_address=(FLOODER, 0))
            sock.sendall(b"GET /user-logs HTTP/1.1\r\nHost: localhost\r\nX-Slow: " if number % 2 else
                         b"POST /api-auth/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000\r\n\r\nx")
            sockets.append(sock)
        time.sleep(1)
        healthz = probe(f"{server.url}/healthz", timeout=2)
        started = time.perf_counter()
        try:
            api_call(server.port, query_path)()
            query = (200, (time.perf_counter() - started) * 1000)
        except (AssertionError, OSError) as error:
            query = (str(error), None)
        return healthz, query
    finally:
        for sock in sockets:
            sock.close()


def flood(server, *, query_path):
    """{observer: (answered 200 within 2 s, asked)} while FLOOD_CONNECTIONS idle connections come from FLOODER."""
    with Flood(HOST, server.port, source=FLOODER, connections=FLOOD_CONNECTIONS) as flooding:
        deadline = time.monotonic() + 30
        while flooding.opened < FLOOD_CONNECTIONS and time.monotonic() < deadline:
            time.sleep(0.1)
        with FairnessProbe(server.probe_url, ["/healthz"]) as kubelet, \
                FairnessProbe(server.url, [query_path], headers={"Authorization": AUTHORIZATION}) as client:
            time.sleep(FLOOD_SECONDS)
    return {"probes": kubelet.served(), "queries": client.served(), "connections opened": flooding.opened}


# --- the run ------------------------------------------------------------------------------------------

def load_level(server, mix, connections, seconds):
    paths = [path for _, path, _ in mix]
    with HealthProber(server.url) as prober:
        figures = run_wrk(server.url, paths, connections=connections, seconds=seconds)
    return figures, prober


def outage(server, database, mix):
    paths = [path for _, path, _ in mix]
    database.stop()
    try:
        with HealthProber(server.probe_url) as prober:
            figures = run_wrk(server.url, paths, connections=OUTAGE_CONNECTIONS, seconds=OUTAGE_SECONDS)
    finally:
        database.start()
    started = time.monotonic()
    while serving(server.url) != 200:
        if time.monotonic() - started > 60:
            return figures, prober, None
        time.sleep(0.1)
    return figures, prober, time.monotonic() - started


def load_steps(large, database, chosen, log_dir, port, *, seconds):
    """Steps 1 to 4 on the 200,000 logs, every model at once."""
    mix = query_mix(large)
    query_path = next(path for label, path, _ in mix if label == "userId+action")
    servers = [start(name, f"mongodb://{HOST}:{port}/{large.database.name}", log_dir) for name in chosen]
    try:
        for server in servers:
            warm_up(server.wait_ready())
        print(f"\n1. {SLOW_CLIENTS} slow clients from {FLOODER} (half-sent heads, trickled bodies); "
              f"from {HOST}:", flush=True)
        for server in servers:
            (healthz, healthz_ms), (query, query_ms) = slow_clients(server, query_path=query_path)
            print(f"  {server.name:10} /healthz {healthz} in {healthz_ms:.0f} ms; query {query}"
                  + (f" in {query_ms:.0f} ms" if query_ms else ""), flush=True)
        print(f"\n2. {FLOOD_CONNECTIONS:,} idle connections from {FLOODER} for {FLOOD_SECONDS} s; "
              f"answered 200 within 2 s from {HOST}:", flush=True)
        for server in servers:
            result = flood(server, query_path=query_path)
            (probes_ok, probes), (queries_ok, queries) = result["probes"], result["queries"]
            print(f"  {server.name:10} probes {probes_ok}/{probes} ({probes_ok / max(probes, 1):.0%}), "
                  f"queries {queries_ok}/{queries} ({queries_ok / max(queries, 1):.0%}); "
                  f"{result['connections opened']:,} flood connections opened", flush=True)
        print(f"\n3. wrk, the query mix, {seconds} s per level; raw driver in the same run:", flush=True)
        for level, connections in enumerate(LEVELS):
            throughput, median, p99 = run_raw(mix, concurrency=connections, seconds=seconds)
            print(f"  {connections:3} connections, raw driver: {throughput:7.1f} req/s, p50 {median:7.1f} ms, "
                  f"p99 {p99:7.1f} ms", flush=True)
            for server in rotated(servers, level):
                figures, prober = load_level(server, mix, connections, seconds)
                rate = figures["requests"] / figures["seconds"]
                print(f"    {server.name:10} {wrk_line(figures)}; {rate / throughput:.2f} of the raw driver",
                      flush=True)
                print(f"    {'':10} {prober.summary()}", flush=True)
        print(f"\n4. database stopped for {OUTAGE_SECONDS} s under {OUTAGE_CONNECTIONS} connections:", flush=True)
        for server in servers:
            figures, prober, back = outage(server, database, mix)
            print(f"  {server.name:10} {wrk_line(figures)}; slowest {figures['max_ms']:.0f} ms", flush=True)
            print(f"  {'':10} {prober.summary()}; serving again "
                  + (f"{back:.1f} s after the database was back" if back is not None else "NOT within 60 s"),
                  flush=True)
    finally:
        for server in servers:
            server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="length of each load level (default 15)")
    parser.add_argument("--only", default=",".join(MODELS),
                        help=f"comma-separated models (default: {','.join(MODELS)})")
    parser.add_argument("--only-cost", action="store_true",
                        help="only step 5, the per-request cost (the 200,000 logs are neither filled nor read)")
    arguments = parser.parse_args()
    chosen = [name.strip() for name in arguments.only.split(",") if name.strip()]
    if unknown := set(chosen) - set(MODELS):
        sys.exit(f"unknown models: {', '.join(sorted(unknown))}; choose from {', '.join(MODELS)}")
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"bench.load needs Debian's {tool}: bash stack/install-system-packages.sh")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "activity_service.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.update(UNREACHED_LIMITS)
    DATA.mkdir(parents=True, exist_ok=True)
    prepare_accounts_database()  # the servers share its accounts database (DATABASE_URL, set there) and token
    global AUTHORIZATION
    AUTHORIZATION = f"Token {bench_token()}"
    from pymongo import MongoClient

    from stack import processes

    log_dir = DATA.parent
    port = processes.free_port()
    database = processes.database(port, DATA, log_dir / "bench-load-mongodb.log").start()
    client = MongoClient(f"mongodb://{HOST}:{port}", tz_aware=True)
    started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"bench.load {started_at}; load average before: {os.getloadavg()[0]:.2f}; models: {', '.join(chosen)}",
          flush=True)
    try:
        large = client[f"bench_api_{LARGE // 1000}k"]["activity_logs"]
        small = client[f"bench_load_{SMALL // 1000}k"]["activity_logs"]
        if not arguments.only_cost:
            print(f"Data: {LARGE:,} logs (and {SMALL:,} for the per-request cost) on SecantusDB", flush=True)
            fill(large, LARGE)
            load_steps(large, database, [name for name in chosen if name not in COST_ONLY], log_dir, port,
                       seconds=arguments.seconds)
        else:
            print(f"Data: {SMALL:,} logs for the per-request cost on SecantusDB", flush=True)
        fill(small, SMALL)

        servers = [start(name, f"mongodb://{HOST}:{port}/{small.database.name}", log_dir) for name in chosen]
        try:
            for server in servers:
                warm_up(server.wait_ready())
            costs, raw, cpu, ratios = per_request_costs(servers, small)
        finally:
            for server in servers:
                server.stop()
        print(f"\n5. Per-request cost at {SMALL:,} logs, one request at a time, median of {COST_ROUNDS} interleaved "
              f"rounds of {COST_SAMPLES}; own cost = API - raw driver:", flush=True)
        print("  raw driver: " + ", ".join(f"{label} {ms:.2f} ms" for label, ms in raw.items()), flush=True)
        for name, figures in costs.items():
            own = {label: figures[label] - raw[label] for label in raw}
            line = ", ".join(f"{label} {figures[label]:.2f} ms (own {own[label]:.2f})" for label in raw)
            if "before" in costs and name != "before":
                line += "; own cost / before's: " + ", ".join(
                    f"{own[label] / (costs['before'][label] - raw[label]):.2f}" for label in raw)
            print(f"  {name:10} {line}; floor: /healthz {figures['/healthz']:.2f} ms, "
                  f"404 through Django {figures['404 through Django']:.2f} ms", flush=True)
        for name, labels in ratios.items():
            print(f"  {name:10} own cost / before's, round by round (least, median, most): " + ", ".join(
                f"{label} {min(values):.2f} {statistics.median(values):.2f} {max(values):.2f}"
                for label, values in labels.items()), flush=True)
        print("  Server CPU per request (its processes' CPU time over each round):", flush=True)
        for name, figures in cpu.items():
            line = ", ".join(f"{label} {ms:.2f} ms" for label, ms in figures.items())
            if "before" in cpu and name != "before":
                line += "; / before's: " + ", ".join(f"{figures[label] / cpu['before'][label]:.2f}" for label in raw)
            print(f"  {name:10} {line}", flush=True)
        print(f"\nload average after: {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        client.close()
        database.stop()


if __name__ == "__main__":
    main()
