"""Load benchmark of the API as deployed: wrk against the production serving command, beside the raw driver.

    python -m bench.load                  # or: make bench-load (needs Debian's wrk: apt-get install wrk)
    python -m bench.load --seconds 5      # shorter levels
    python -m bench.load --compare        # also the same load on the alternatives in SERVING_MODELS

Starts SecantusDB on the data folder of bench/api (200,000 generated logs, inserted once and reused), then
the API exactly as the image starts it (gunicorn.conf.py, activity_service.asgi, 2 workers), and reports:
1. for 10, 50 and 100 connections, wrk running a mix of documented queries (userId; userId+action;
   userId+from/to; one log by id) for SECONDS: throughput, p50/p99, statuses, and /healthz latency
   sampled every 100 ms by a separate prober opening a connection per probe, as kubelet does;
2. the raw driver (pymongo threads, the same queries, page and count, the same concurrency);
3. a database outage: 50 connections for 10 s with the database stopped, every answer's status and the
   slowest, /healthz latency, and how long the API takes to serve again once the database is back;
4. the API's own cost per request at 5,000 logs (its median minus the raw driver's median, one request
   at a time over a keep-alive connection) for get-by-id and userId+action;
5. whether the server still answers /healthz while 100 clients hold half-sent requests.
Everything listens and connects on 127.0.0.1 only, and every step is bounded in time.
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

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
LARGE, SMALL = 200_000, 5_000
LEVELS = (10, 50, 100)
OUTAGE_CONNECTIONS, OUTAGE_SECONDS = 50, 10
PROBE_INTERVAL = 0.1
USERS_IN_MIX = 200
IDS_IN_MIX = 200
RANGE = ("2026-10-05T00:00:00Z", "2026-10-20T00:00:00Z")
NEWEST_FIRST = [("timestamp", -1), ("_id", -1)]
AUTHORIZATION = None  # `Token <key>` of the benchmark's all-users account, set in main()
SERVING_MODELS = {
    "uvicorn workers, Django's WSGI app in up to 16 threads (threaded_wsgi), as deployed":
        ["activity_service.asgi:application"],
    "uvicorn workers, Django's ASGI handler (no /healthz shortcut)": ["django.core.asgi:get_asgi_application()"],
    "gthread workers, 8 threads (WSGI)":
        ["--worker-class", "gthread", "--threads", "8", "activity_service.wsgi:application"],
}


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

class Api:
    """gunicorn with the project's gunicorn.conf.py; `arguments` pick the worker class and application."""

    def __init__(self, mongodb_uri, arguments, log_path):
        from stack import processes

        self.port = processes.free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.metrics_dir = tempfile.mkdtemp(prefix="bench-load-metrics-")
        env = {**os.environ, "MONGODB_URI": mongodb_uri, "GUNICORN_BIND": f"{HOST}:{self.port}",
               "GUNICORN_WORKERS": "2", "API_METRICS_PORT": "0", "LOG_LEVEL": "WARNING",
               "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir,
               "DJANGO_SECRET_KEY": uuid.uuid4().hex * 2, "DJANGO_SETTINGS_MODULE": "activity_service.settings"}
        with open(log_path, "w") as log:
            self.process = subprocess.Popen([str(Path(sys.executable).with_name("gunicorn")), "--config",
                                             "gunicorn.conf.py", *arguments],
                                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while probe(f"{self.url}/readyz", timeout=5)[0] != 200:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the API did not become ready; see {log_path}")
            time.sleep(0.2)

    def stop(self):
        from stack import processes

        processes.terminate(self.process, timeout=30)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


def probe(url, *, timeout):
    """(status or None, milliseconds) of one GET on a new connection."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (urllib.error.URLError, OSError):
        status = None
    return status, (time.perf_counter() - started) * 1000


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
  for status, count in pairs(statuses) do table.insert(parts, string.format('"%%s": %%d', status, count)) end
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
    connection = http.client.HTTPConnection(HOST, port, timeout=10)

    def call():
        connection.request("GET", path, headers={"Authorization": AUTHORIZATION})
        response = connection.getresponse()
        response.read()
        assert response.status == status, (path, response.status)
    return call


def per_request_cost(api, collection):
    document = collection.find_one({"action": "send"})
    user = document["userId"]
    rows = []
    for label, path, raw in (
            ("get by id", f"/user-logs/{document['_id']}", lambda: collection.find_one({"_id": document["_id"]})),
            ("userId+action", f"/user-logs?userId={user}&action=send",
             lambda: (list(collection.find({"userId": user, "action": "send"}).sort(NEWEST_FIRST).limit(10)),
                      collection.count_documents({"userId": user, "action": "send"})))):
        raw_ms, api_ms = sequential_median_ms(raw, 300), sequential_median_ms(api_call(api.port, path), 300)
        rows.append(f"  {label:14} raw {raw_ms:6.2f} ms, API {api_ms:6.2f} ms, "
                    f"API's own cost {api_ms - raw_ms:5.2f} ms "
                    f"(target <= 0.5 ms: {'ok' if api_ms - raw_ms <= 0.5 else 'missed'})")
    # What any answer costs before the API's own code runs: the server alone, then Django's middleware and
    # URL resolution answering an unrouted path (no view, no database).
    loop_ms = sequential_median_ms(api_call(api.port, "/healthz"), 300)
    django_ms = sequential_median_ms(api_call(api.port, "/no-such-path", status=404), 300)
    rows.append(f"  floor: /healthz on the event loop {loop_ms:.2f} ms; a 404 through Django, no view and no database, "
                f"{django_ms:.2f} ms")
    return rows


# --- slow clients -------------------------------------------------------------------------------------

def holds_slow_clients(api, clients=100):
    """Whether /healthz answers within 2 s while `clients` connections hold half-sent request headers."""
    sockets = []
    try:
        for _ in range(clients):
            sock = socket.create_connection((HOST, api.port), timeout=5)
            sock.sendall(b"GET /user-logs HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            sockets.append(sock)
        status, elapsed = probe(f"{api.url}/healthz", timeout=2)
        return status == 200, elapsed
    finally:
        for sock in sockets:
            sock.close()


# --- the run ------------------------------------------------------------------------------------------

def load_levels(api, mix, seconds):
    paths = [path for _, path, _ in mix]
    for connections in LEVELS:
        with HealthProber(api.url) as prober:
            figures = run_wrk(api.url, paths, connections=connections, seconds=seconds)
        print(f"  {connections:3} connections: {wrk_line(figures)}", flush=True)
        print(f"                   {prober.summary()}", flush=True)


def outage(api, database, mix):
    paths = [path for _, path, _ in mix]
    database.stop()
    try:
        with HealthProber(api.url) as prober:
            figures = run_wrk(api.url, paths, connections=OUTAGE_CONNECTIONS, seconds=OUTAGE_SECONDS)
        print(f"  database stopped, {OUTAGE_CONNECTIONS} connections: {wrk_line(figures)}; "
              f"slowest {figures['max_ms']:.0f} ms", flush=True)
        print(f"                   {prober.summary()}", flush=True)
    finally:
        database.start()
    started = time.monotonic()
    while probe(f"{api.url}/readyz", timeout=10)[0] != 200:
        if time.monotonic() - started > 60:
            raise RuntimeError("the API did not serve again within 60 s of the database's return")
        time.sleep(0.1)
    print(f"  serving again {time.monotonic() - started:.1f} s after the database was back", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="length of each load level (default 15)")
    parser.add_argument("--compare", action="store_true", help="also load the alternative serving models")
    arguments = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench.load needs wrk: apt-get install wrk")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "activity_service.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # The servers below share the benchmark's accounts database (DATABASE_URL, set here) and its token;
    # a throttle rate no client reaches keeps the throttle running without refusing the load.
    os.environ["API_THROTTLE_RATE"] = "1000000/second"
    DATA.mkdir(parents=True, exist_ok=True)
    prepare_accounts_database()
    global AUTHORIZATION
    AUTHORIZATION = f"Token {bench_token()}"
    from pymongo import MongoClient

    from stack import processes

    port = processes.free_port()
    database = processes.database(port, DATA, DATA.parent / "bench-load-mongodb.log").start()

    client = MongoClient(f"mongodb://{HOST}:{port}", tz_aware=True)
    try:
        large, small = (client[f"bench_api_{LARGE // 1000}k"]["activity_logs"],
                        client[f"bench_load_{SMALL // 1000}k"]["activity_logs"])
        print(f"Data: {LARGE:,} logs (and {SMALL:,} for the per-request cost) on SecantusDB", flush=True)
        fill(large, LARGE)
        fill(small, SMALL)
        mix = query_mix(large)
        models = SERVING_MODELS if arguments.compare else dict(list(SERVING_MODELS.items())[:1])
        for number, (model, server_arguments) in enumerate(models.items()):
            api = Api(f"mongodb://{HOST}:{port}/{large.database.name}", server_arguments,
                      DATA.parent / f"bench-load-api-{number}.log")
            try:
                held, elapsed = holds_slow_clients(api)
                print(f"\n{model}, 2 workers; /healthz with 100 half-sent requests held: "
                      f"{'answered in %.0f ms' % elapsed if held else 'NO ANSWER within 2 s'}", flush=True)
                load_levels(api, mix, arguments.seconds)
                if number == 0:
                    outage(api, database, mix)
            finally:
                api.stop()
        print("\nRaw driver (pymongo threads), the same mix, page and count:", flush=True)
        for concurrency in LEVELS:
            throughput, median, p99 = run_raw(mix, concurrency=concurrency, seconds=arguments.seconds)
            print(f"  {concurrency:3} threads: {throughput:7.1f} req/s, p50 {median:7.1f} ms, p99 {p99:7.1f} ms",
                  flush=True)
        api = Api(f"mongodb://{HOST}:{port}/{small.database.name}", SERVING_MODELS[next(iter(SERVING_MODELS))],
                  DATA.parent / "bench-load-api-small.log")
        try:
            print(f"\nPer-request cost at {SMALL:,} logs, one request at a time:", flush=True)
            for row in per_request_cost(api, small):
                print(row, flush=True)
        finally:
            api.stop()
    finally:
        client.close()
        database.stop()


if __name__ == "__main__":
    main()
