"""Query API benchmark: raw driver vs API medians, collection-size scaling, and gunicorn under load.

    python -m bench.api              # or: make bench-api

Starts the local database (SecantusDB) whose data is kept in .data/bench-api, so the generated
documents (100,000 and 200,000 in two databases) are inserted once and reused by later runs; then
measures the same documents on a second MongoDB-protocol server, nx-27017 (SQLite underneath, data in
.data/bench-api-nx), whose explain() shows whether the query was answered from an index.
`python -m bench.api load URL SECONDS CONCURRENCY` is the load generator, run as a second process.
"""

import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data" / "bench-api"
NX_DATA = ROOT / ".data" / "bench-api-nx"
USERS = 2_000
SIZES = (100_000, 200_000)
BATCH = 20_000
QUERIES = {
    "userId=user-1&page=1&limit=10": ({"userId": "user-1"}, 0, 10),
    "action=send&page=50&limit=10": ({"action": "send"}, 490, 10),
    "page=1&limit=10 (unfiltered)": ({}, 0, 10),
}
USER_QUERY = "userId=user-1&page=1&limit=10"
# On nx-27017 a filtered query scans the table (see nx_extra), so `action=send` takes as long as `userId`
# (about 8 s a request at 200,000 documents) and adds nothing; it is left out there.
NX_QUERIES = {label: QUERIES[label] for label in (USER_QUERY, "page=1&limit=10 (unfiltered)")}
TARGET_RATIO = 1.5
TARGET_ACCESS_CONTROL_MS = 0.5  # added to the median of a filtered query by authentication and authorization
# Per variant, interleaved so that drift and noise hit all variants alike; each variant has its own account,
# so that none exceeds the default API_THROTTLE_RATE (1200/minute) however fast the machine.
ACCESS_CONTROL_SAMPLES = 500
BENCH_ACCOUNT = "bench"
UNCACHED = "all-users, API_TOKEN_CACHE_SECONDS=0"  # every request reads token, user and permissions
TARGET_GROWTH = 30  # percent, userId API median from SIZES[0] to SIZES[1] documents
SAMPLE_SECONDS = 15  # per query and side; slow queries get fewer samples (at least 3)


def generated_documents(count, *, seed):
    """Stored documents as ingestion writes them, from events spread over 30 days and USERS users."""
    from logs.events import BALANCE_INQUIRY, RECEIVE, SEND, ActivityEvent
    from logs.storage.documents import ActivityLog

    rng = random.Random(seed)
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    for _ in range(count):
        action = rng.choice((SEND, RECEIVE, BALANCE_INQUIRY))
        user = rng.randint(1, USERS)
        details = ({"balance_cents": rng.randint(0, 10_000_000)} if action == BALANCE_INQUIRY else
                   {"amount_cents": rng.randint(1, 100_000), "currency": "USD",
                    "counterparty_id": f"user-{user % USERS + 1}", "transfer_id": str(uuid.UUID(int=rng.getrandbits(128)))})
        event = ActivityEvent(event_id=str(uuid.UUID(int=rng.getrandbits(128))), user_id=f"user-{user}", action=action,
                              timestamp=start + timedelta(milliseconds=rng.randint(0, 30 * 86_400_000)), **details)
        yield ActivityLog.mongo_document(event)


def index_keys(spec, *, without_id):
    """The index's keys; `without_id` drops `_id` from a compound key (nx-27017 0.8.1 accepts such an
    index, but then every insert fails with "JSON path error near '_id'")."""
    keys = spec["fields"]
    return [key for key in keys if key[0] != "_id"] if without_id and len(keys) > 1 else keys


def fill(collection, size, *, without_id=False):
    """Insert the generated documents in large unordered batches, unless a previous run already did."""
    from logs.storage.documents import ActivityLog

    if collection.estimated_document_count() == size:
        return
    collection.drop()
    for spec in ActivityLog._meta["index_specs"]:
        collection.create_index(index_keys(spec, without_id=without_id),
                                **{key: value for key, value in spec.items() if key != "fields"})
    started, batch = time.monotonic(), []
    for document in generated_documents(size, seed=size):
        batch.append(document)
        if len(batch) == BATCH:
            collection.insert_many(batch, ordered=False)
            batch = []
    if batch:
        collection.insert_many(batch, ordered=False)
    elapsed = time.monotonic() - started
    print(f"  inserted {size:,} documents in {elapsed:.0f} s ({size / elapsed:,.0f}/s)", flush=True)


def median_ms(call):
    call()  # warm up: connection, plan cache
    samples, deadline = [], time.monotonic() + SAMPLE_SECONDS
    while len(samples) < 3 or (time.monotonic() < deadline and len(samples) < 25):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def sequential_median_ms(call, samples):
    """Median milliseconds of `samples` calls in a row, after one warm-up call."""
    call()
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def raw_query(collection, query, skip, limit):
    """The same work with pymongo alone: one page newest first, and the total (metadata when unfiltered)."""
    def call():
        list(collection.find(query).sort([("timestamp", -1), ("_id", -1)]).skip(skip).limit(limit))
        collection.count_documents(query) if query else collection.estimated_document_count()
    return call


def bench_token():
    """The all-users token the benchmark's requests send, in its own accounts database under DATA."""
    from logs.api.accounts import issue_api_token

    return issue_api_token(username=BENCH_ACCOUNT, all_users=True).key


def api_request(client, path):
    def call():
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
    return call


def use_database(uri):
    from django.conf import settings

    from logs.storage.connection import connect_database

    settings.MONGODB_URI = uri
    connect_database()


def compare(port, server, *, queries=QUERIES, without_id=False, extra=None):
    """Medians of raw driver and API for each query, at every collection size; `extra(collection)`
    runs after them at each size (nx-27017's explain and index-path figures)."""
    from django.test import Client
    from pymongo import MongoClient

    results = {}
    for size in SIZES:
        uri = f"mongodb://127.0.0.1:{port}/bench_api_{size // 1000}k"
        mongo = MongoClient(uri, tz_aware=True)
        collection = mongo.get_default_database()["activity_logs"]
        print(f"\n{server}, {size:,} documents", flush=True)
        fill(collection, size, without_id=without_id)
        use_database(uri)
        client = Client(headers={"Authorization": f"Token {bench_token()}"})
        for label, (query, skip, limit) in queries.items():
            path = "/user-logs?" + label.split(" ")[0]
            raw = median_ms(raw_query(collection, query, skip, limit))
            api = median_ms(api_request(client, path))
            results[(size, label)] = (raw, api)
            verdict = "ok" if api / raw <= TARGET_RATIO else f"over {TARGET_RATIO}"
            print(f"  {label:32} raw {raw:9.2f} ms   API {api:9.2f} ms   ratio {api / raw:5.2f} ({verdict})", flush=True)
        if extra:
            extra(collection, size)
        mongo.close()
    return results


def growth_line(server, results):
    small, large = results[(SIZES[0], USER_QUERY)][1], results[(SIZES[1], USER_QUERY)][1]
    growth = (large - small) / small * 100
    return (f"{server:12} userId API median {SIZES[0]:,} -> {SIZES[1]:,} documents: {small:.2f} -> {large:.2f} ms "
            f"({growth:+.0f}%, target < +{TARGET_GROWTH}%: {'ok' if growth < TARGET_GROWTH else 'missed'})")


def nx_extra(collection, size):
    """What nx-27017 does with the userId page query: its explain (SQLite's plan for the filter alone:
    nx-27017 leaves sort, skip and limit out of it), and the same page and count written with `$eq`,
    the form nx-27017 answers from the index (to MongoDB it is the same query as the API's plain
    equality, which nx-27017 matches through json_each, a table scan). Its count_documents scans either way."""
    query, skip, limit = QUERIES[USER_QUERY]
    newest_first = [("timestamp", -1), ("_id", -1)]
    for label, filter_ in (("plain equality (as the API sends it)", query),
                           ("$eq", {name: {"$eq": value} for name, value in query.items()})):
        plan = collection.find(filter_).sort(newest_first).skip(skip).limit(limit).explain()
        stages = plan.get("queryPlanner", {}).get("winningPlan")
        print(f"  explain, userId page query, {label}: {json.dumps(stages)}", flush=True)
    eq = {name: {"$eq": value} for name, value in query.items()}
    page = median_ms(lambda: list(collection.find(eq).sort(newest_first).skip(skip).limit(limit)))
    count = median_ms(lambda: collection.count_documents(eq))
    print(f"  raw userId query written with $eq: page {page:.2f} ms, count_documents {count:.2f} ms "
          f"(not what the API sends)", flush=True)


def run_workers(worker, count):
    """`worker(seed)` for seeds 0..count-1, each in a thread of its own, all at once; the seconds they took."""
    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(count)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


def load(url_base, seconds, concurrency, token):
    """The load generator (a separate process): CONCURRENCY threads, one request at a time each."""
    paths = [f"/user-logs?userId=user-{user}&page=1&limit=10" for user in range(1, 201)]
    latencies, errors, lock = [], [0], threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(seed):
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                request = urllib.request.Request(url_base + rng.choice(paths), headers={"Authorization": f"Token {token}"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    response.read()
                    ok = response.status == 200
            except (urllib.error.URLError, OSError):
                ok = False
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed) if ok else None
                errors[0] += 0 if ok else 1

    elapsed = run_workers(worker, concurrency)
    latencies.sort()
    percentile = lambda p: latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else float("nan")  # noqa: E731
    print(json.dumps({"requests": len(latencies) + errors[0], "errors": errors[0], "seconds": round(elapsed, 1),
                      "rps": round((len(latencies) + errors[0]) / elapsed, 1),
                      "p50_ms": round(percentile(0.50), 2), "p99_ms": round(percentile(0.99), 2)}))


def under_load(port, *, seconds=20, concurrency=4):
    """gunicorn with 2 workers (the project's gunicorn.conf.py) and the load generator as a second process."""
    from stack import processes

    api_port = processes.free_port()
    # A one-second throttle window with a rate no client reaches: the throttle still runs, its history stays short.
    env = {**os.environ, "MONGODB_URI": f"mongodb://127.0.0.1:{port}/bench_api_{SIZES[-1] // 1000}k",
           "GUNICORN_BIND": f"127.0.0.1:{api_port}", "API_PROBE_PORT": "0", "GUNICORN_WORKERS": "2", "LOG_LEVEL": "WARNING",
           "API_THROTTLE_RATE": "100000/second"}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "activity_service.wsgi"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not processes.port_open(api_port):
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{api_port}"
        token = bench_token()
        urllib.request.urlopen(urllib.request.Request(url + "/user-logs?userId=user-1",
                                                      headers={"Authorization": f"Token {token}"}), timeout=10).read()
        print(f"\nUnder load: gunicorn 2 workers, {concurrency} concurrent clients for {seconds} s, "
              f"userId queries over {SIZES[-1]:,} documents", flush=True)
        output = subprocess.run([sys.executable, "-m", "bench.api", "load", url, str(seconds), str(concurrency), token],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout
        figures = json.loads(output.strip().splitlines()[-1])
        ratio = figures["p99_ms"] / figures["p50_ms"]
        print(f"  {figures['rps']} requests/s, p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms "
              f"(p99/p50 {ratio:.1f}, target <= 5: {'ok' if ratio <= 5 else 'missed'}), "
              f"errors {figures['errors']} of {figures['requests']} (target 0: {'ok' if figures['errors'] == 0 else 'missed'})")
    finally:
        server.terminate()
        server.wait(10)


def prepare_accounts_database():
    """Django set up on the benchmark's own accounts database (SQLite under DATA, as `make run` has one
    under .data), migrated; the audit lines go to a file there, as a deployment would ship them."""
    import logging

    import django
    from django.core.management import call_command

    os.environ.setdefault("DATABASE_URL", f"sqlite:///{DATA / 'django.sqlite3'}")
    django.setup()
    call_command("migrate", verbosity=0)
    audit = logging.getLogger("logs.audit")
    audit.propagate = False
    audit.addHandler(logging.FileHandler(DATA.parent / "bench-api-audit.log"))


def access_control_overhead(port):
    """Median of the same filtered page with and without authentication, authorization, throttling and
    the audit line, on the smaller collection: the view as served, beside a copy with all four removed."""
    from django.test import Client, override_settings
    from django.urls import path
    from rest_framework.permissions import AllowAny
    from rest_framework.viewsets import ReadOnlyModelViewSet

    from logs.api.accounts import issue_api_token
    from logs.api.viewsets import ActivityLogViewSet
    from logs.storage.selectors import activity_log_list

    class WithoutAccessControl(ActivityLogViewSet):
        authentication_classes = ()
        permission_classes = (AllowAny,)
        throttle_classes = ()

        def get_queryset(self):
            return activity_log_list()

        def finalize_response(self, request, response, *args, **kwargs):
            return ReadOnlyModelViewSet.finalize_response(self, request, response, *args, **kwargs)

    class Routes:
        urlpatterns = [path("open/user-logs", WithoutAccessControl.as_view({"get": "list"})),
                       path("user-logs", ActivityLogViewSet.as_view({"get": "list"}))]

    use_database(f"mongodb://127.0.0.1:{port}/bench_api_{SIZES[0] // 1000}k")
    def client_of(username, *, all_users=False):
        key = issue_api_token(username=username, all_users=all_users).key
        return Client(headers={"Authorization": f"Token {key}"})

    query = USER_QUERY
    variants = {
        "without access control": (Client(), f"/open/user-logs?{query}"),
        "all-users token": (client_of("bench-all-users", all_users=True), f"/user-logs?{query}"),
        "user-1's own token (scoped)": (client_of("user-1"), f"/user-logs?{query}"),
    }
    samples = {label: [] for label in variants}
    with override_settings(ROOT_URLCONF=Routes):
        calls = {label: api_request(client, path) for label, (client, path) in variants.items()}
        uncached = api_request(client_of("bench-uncached", all_users=True), f"/user-logs?{query}")

        def without_token_cache():
            with override_settings(API_TOKEN_CACHE_SECONDS=0):
                uncached()

        calls[UNCACHED] = without_token_cache
        samples[UNCACHED] = []
        for call in calls.values():
            call()
        for _ in range(ACCESS_CONTROL_SAMPLES):
            for label, call in calls.items():
                started = time.perf_counter()
                call()
                samples[label].append((time.perf_counter() - started) * 1000)
    medians = {label: statistics.median(values) for label, values in samples.items()}
    base = medians["without access control"]
    print(f"\nAccess control, {query} over {SIZES[0]:,} documents (SecantusDB), {ACCESS_CONTROL_SAMPLES} interleaved "
          f"requests per variant:", flush=True)
    for label, median in medians.items():
        added = median - base
        verdict = f"  added {added:+.3f} ms (for comparison)" if label == UNCACHED else "" if label == "without access control" else \
            f"  added {added:+.3f} ms (target <= {TARGET_ACCESS_CONTROL_MS} ms: {'ok' if added <= TARGET_ACCESS_CONTROL_MS else 'missed'})"
        print(f"  {label:38} median {median:8.3f} ms{verdict}", flush=True)


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "activity_service.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # WhiteNoise notes that `collectstatic` has not run; irrelevant to these figures.
    warnings.filterwarnings("ignore", "No directory at", UserWarning)
    if sys.argv[1:2] == ["load"]:
        load(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    # The unfiltered and `action=send` pages take seconds on SecantusDB (docs/benchmarks.md); this measures
    # what the API adds to them, so its request deadline must not cut them off.
    os.environ["API_DATABASE_TIMEOUT_MS"] = "120000"
    DATA.mkdir(parents=True, exist_ok=True)
    prepare_accounts_database()
    from stack import processes

    port = processes.free_port()
    database = processes.database(port, DATA, DATA.parent / "bench-api-mongodb.log").start()
    try:
        secantus = compare(port, "SecantusDB")
        print("\n" + growth_line("SecantusDB", secantus), flush=True)
        access_control_overhead(port)
        under_load(port)
    finally:
        database.stop()

    port = processes.free_port()
    database = processes.nx_database(port, NX_DATA, NX_DATA.parent / "bench-api-nx.log").start()
    try:
        # The same generated documents and indexes, less `_id` at the end of the compound ones (see index_keys).
        nx = compare(port, "nx-27017", queries=NX_QUERIES, without_id=True, extra=nx_extra)
    finally:
        database.stop()

    print("\nuserId query, both servers (neither is MongoDB):")
    for server, results in (("SecantusDB", secantus), ("nx-27017", nx)):
        raw, api = results[(SIZES[-1], USER_QUERY)]
        print(f"  {growth_line(server, results)}; at {SIZES[-1]:,}: raw {raw:.2f} ms, API {api:.2f} ms, ratio {api / raw:.2f}")


if __name__ == "__main__":
    main()
