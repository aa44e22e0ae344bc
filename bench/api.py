"""Query API benchmark: raw driver vs API medians and collection-size scaling, in process (no HTTP server).

    python -m bench.api              # or: make bench-api

Starts the local database (SecantusDB) whose data is kept in .data/bench-api, so the generated
documents (100,000 and 200,000 in two databases) are inserted once and reused by later runs; then
measures the same documents on a second MongoDB-protocol server, nx-27017 (SQLite underneath, data in
.data/bench-api-nx), whose explain() shows whether the query was answered from an index.
The API under concurrent load, as deployed, is bench/load.py's.
"""

import json
import os
import random
import statistics
import time
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
TARGET_GROWTH = 30  # percent, userId API median from SIZES[0] to SIZES[1] documents
SAMPLE_SECONDS = 15  # per query and side; slow queries get fewer samples (at least 3)


def generated_documents(count, *, seed):
    """Stored documents as ingestion writes them, from events spread over 30 days and USERS users."""
    from logs.documents import ActivityLog
    from logs.events import BALANCE_INQUIRY, RECEIVE, SEND, ActivityEvent

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
    from logs.documents import ActivityLog

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


def raw_query(collection, query, skip, limit):
    """The same work with pymongo alone: one page newest first, and the total (metadata when unfiltered)."""
    def call():
        list(collection.find(query).sort([("timestamp", -1), ("_id", -1)]).skip(skip).limit(limit))
        collection.count_documents(query) if query else collection.estimated_document_count()
    return call


def api_request(client, path):
    def call():
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
    return call


def use_database(uri):
    from django.conf import settings

    from logs.database import connect_database

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
        client = Client()
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


def start_bench_database(log_name):
    """Django set up for a benchmark, and SecantusDB started on DATA: (port, server)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "activity_service.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # WhiteNoise notes that `collectstatic` has not run; irrelevant to these figures.
    warnings.filterwarnings("ignore", "No directory at", UserWarning)
    import django

    django.setup()
    from stack import processes

    port = processes.free_port()
    DATA.mkdir(parents=True, exist_ok=True)
    return port, processes.database(port, DATA, DATA.parent / log_name).start()


def main():
    from stack import processes

    # The unfiltered and `action=send` pages take seconds on SecantusDB (README "Benchmark"); this measures
    # what the API adds to them, so its request deadline must not cut them off.
    os.environ["API_DATABASE_TIMEOUT_MS"] = "120000"
    port, database = start_bench_database("bench-api-mongodb.log")
    try:
        secantus = compare(port, "SecantusDB")
        print("\n" + growth_line("SecantusDB", secantus), flush=True)
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
