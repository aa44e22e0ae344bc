"""Keyset pages benchmark: a deep keyset page against the first, the numbered page=150 beside them, and
24 clients walking the listing by keyset or by page numbers under the deployed deadline.

    python -m bench.keyset                 # or: make bench-keyset
    python -m bench.keyset --seconds 20    # a shorter load

Starts SecantusDB on bench/api's data folder (.data/bench-api, generated documents inserted once and reused:
20,000 and 30,000 here, 200,000 shared with bench-api and bench-load), then:

1. At 20,000 and at 200,000 logs, unfiltered and for `action=send`, the median of the first keyset page
   (`after=`), a keyset page 15,000 logs deep (`after=<the 15,000th log>`; a listing shorter than that,
   `action=send` at 20,000, as deep as it goes) and the numbered `page=150`,
   each through the API (Django's test client, the whole request, a 120 s database deadline) and with
   pymongo alone sending the same queries (the raw limit), and the ratio of the deep keyset page to the
   first (target <= 1.5).
2. At 30,000 logs, the API as deployed (gunicorn.conf.py, 2 workers, the 2.5 s database deadline):
   - the mixed load: 24 clients running bench/load's mix as walks from the first page, each for SECONDS:
     6 walk a user's history, 6 a user's `send`s, 6 a user's fortnight (`from`/`to`: bench/load's range),
     6 read single logs by id; once by following `next` (keyset), once by page numbers. Every answer's
     status is counted; the target is fewer than 1% of the keyset run's requests answered 504;
   - export walks beside it, no target: 2 clients walk every `send` and 2 everything, 100 logs a page.
3. Part 1 for the unfiltered listing on nx-27017 (data in .data/bench-api-nx, as bench/api keeps it), a
   MongoDB-protocol server that reads a sorted index range in order and stops at the limit, as MongoDB
   does; SecantusDB reads the whole range behind a page first (docs/queries.md).
"""

import argparse
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
import warnings
from pathlib import Path

from bench.api import DATA, NX_DATA, bench_token, fill, median_ms, prepare_accounts_database, run_workers, use_database

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SIZES = (20_000, 200_000)
DEPTH = 15_000
NUMBERED_PAGE = 150
LIMIT = 10
TARGET_DEEP_RATIO = 1.5
LOAD_SIZE = 30_000
TARGET_TIMEOUT_SHARE = 0.01
NEWEST_FIRST = [("timestamp", -1), ("_id", -1)]
LOAD_RANGE = ("2026-10-05T00:00:00Z", "2026-10-20T00:00:00Z")  # bench/load's
LISTINGS = {"unfiltered": {}, "action=send": {"action": "send"}}
# (label, clients, query, limit): the walks of each load. The mixed load is bench/load's mix (userId;
# userId+action; userId+from/to; one log by id) with each listing walked from its first page.
MIXED_LOAD = (
    ("a user's history", 6, "userId={user}", 10),
    ("a user's sends", 6, "userId={user}&action=send", 10),
    ("a user's fortnight", 6, "userId={user}&from=" + LOAD_RANGE[0] + "&to=" + LOAD_RANGE[1], 10),
    ("one log by id", 6, None, None),
)
EXPORTS = (
    ("every send", 2, "action=send", 100),
    ("everything", 2, "", 100),
)
USERS_WALKED = 200


def database_name(size):
    # 200,000 is the data bench/api and bench/load use: the same generated documents (seeded by size).
    return f"bench_api_{size // 1000}k" if size == 200_000 else f"bench_keyset_{size // 1000}k"


# --- 1. page medians ----------------------------------------------------------------------------------

def raw_calls(collection, query):
    """pymongo alone: the same queries the API sends for each page (docs/queries.md); and the deep page's
    starting log, DEPTH logs into the listing, or as deep as a shorter listing goes."""
    depth = min(DEPTH, collection.count_documents(query) - 2 * LIMIT)
    deep = collection.find(query, {"timestamp": 1}).sort(NEWEST_FIRST).skip(depth - 1).limit(1).next()

    def first_keyset():
        list(collection.find(query).sort(NEWEST_FIRST).limit(LIMIT + 1))

    def deep_keyset():
        start = collection.find_one({"_id": deep["_id"]}, {"timestamp": 1})
        bounded = {**query, "timestamp": {"$lte": start["timestamp"]}}
        list(collection.find(bounded).sort(NEWEST_FIRST).limit(LIMIT + 2))

    def numbered():
        list(collection.find(query).sort(NEWEST_FIRST).skip((NUMBERED_PAGE - 1) * LIMIT).limit(LIMIT))
        collection.count_documents(query) if query else collection.estimated_document_count()

    return depth, deep["_id"], {"first keyset page": first_keyset, "deep keyset page": deep_keyset,
                                f"numbered page={NUMBERED_PAGE}": numbered}


def api_paths(label, deep_id):
    prefix = f"/user-logs?{label}&" if label != "unfiltered" else "/user-logs?"
    return {"first keyset page": f"{prefix}limit={LIMIT}&after=",
            "deep keyset page": f"{prefix}limit={LIMIT}&after={deep_id}",
            f"numbered page={NUMBERED_PAGE}": f"{prefix}limit={LIMIT}&page={NUMBERED_PAGE}"}


def page_medians(port, server, listings, *, without_id=False):
    """The medians of part 1 on one server; `without_id` as bench/api's `fill` (nx-27017's indexes)."""
    from django.conf import settings
    from django.test import Client
    from pymongo import MongoClient

    # The seconds-long pages are what this part measures: the deployed 2.5 s deadline would cut them off.
    settings.API_DATABASE_TIMEOUT_MS = 120_000
    for size in SIZES:
        uri = f"mongodb://{HOST}:{port}/{database_name(size)}"
        with MongoClient(uri, tz_aware=True) as mongo:
            collection = mongo.get_default_database()["activity_logs"]
            print(f"\n{server}, {size:,} logs", flush=True)
            fill(collection, size, without_id=without_id)
            use_database(uri)
            client = Client(headers={"Authorization": f"Token {bench_token()}"})
            for label in listings:
                depth, deep_id, raw = raw_calls(collection, LISTINGS[label])
                medians = {}
                for page, path in api_paths(label, deep_id).items():
                    raw_ms, api_ms = median_ms(raw[page]), median_ms(api_request(client, path))
                    medians[page] = api_ms
                    shown = f"keyset page {depth:,} deep" if page == "deep keyset page" else page
                    print(f"  {label:12} {shown:26} raw {raw_ms:9.2f} ms   API {api_ms:9.2f} ms   "
                          f"API / raw {api_ms / raw_ms:5.2f}", flush=True)
                first, deep = medians["first keyset page"], medians["deep keyset page"]
                verdict = "met" if deep / first <= TARGET_DEEP_RATIO else "missed"
                print(f"  {label:12} deep keyset page / first: {deep / first:.2f} "
                      f"(target <= {TARGET_DEEP_RATIO}: {verdict})", flush=True)


def api_request(client, path):
    def call():
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
    return call


# --- 2. 24 walking clients ----------------------------------------------------------------------------

def walk_load(url, seconds, token, mode, load, ids):
    """The load generator (a process of its own): a thread per client of `load` (MIXED_LOAD or EXPORTS), each
    walking one listing from its first page, by `next` (keyset) or by page numbers, or reading logs by `ids`,
    until `seconds` pass; statuses and latencies per kind of client."""
    kinds = [(label, query, limit) for label, clients, query, limit in load for _ in range(clients)]
    results, lock, deadline = {}, threading.Lock(), time.monotonic() + seconds

    def get(path):
        started = time.perf_counter()
        try:
            request = urllib.request.Request(url + path, headers={"Authorization": f"Token {token}"})
            with urllib.request.urlopen(request, timeout=30) as response:
                status, body = response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            status, body = error.code, None
        except (urllib.error.URLError, OSError):
            status, body = "socket error", None
        return status, body, (time.perf_counter() - started) * 1000

    def worker(number):
        label, query, limit = kinds[number]
        rng, own = random.Random(number), []
        while time.monotonic() < deadline:
            if query is None:
                own.append(get(f"/user-logs/{rng.choice(ids)}")[::2])
                continue
            listing = f"/user-logs?{query.format(user=f'user-{rng.randint(1, USERS_WALKED)}')}&limit={limit}"
            path, page = listing, 1
            while path and time.monotonic() < deadline:
                status, body, elapsed = get(path)
                own.append((status, elapsed))
                if status != 200:
                    break
                if mode == "keyset":
                    path = body["next"] and body["next"][body["next"].index("/user-logs"):]
                else:
                    page += 1
                    path = f"{listing}&page={page}" if page <= body["totalPages"] else None
        with lock:
            results.setdefault(label, []).extend(own)

    run_workers(worker, len(kinds))
    summary = {}
    for label, samples in results.items():
        statuses = {}
        for status, _ in samples:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        latencies = sorted(elapsed for _, elapsed in samples)
        summary[label] = {"requests": len(samples), "statuses": statuses,
                          "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
                          "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1)
                          if latencies else None}
    print(json.dumps(summary))


def walking_clients(port, seconds):
    from pymongo import MongoClient

    from bench.load import Api

    ids = DATA.parent / "bench-keyset-ids.json"  # the logs the by-id clients read, 200 taken from the data
    with MongoClient(f"mongodb://{HOST}:{port}", tz_aware=True) as mongo:
        collection = mongo[database_name(LOAD_SIZE)]["activity_logs"]
        fill(collection, LOAD_SIZE)
        ids.write_text(json.dumps([document["_id"] for document in collection.find({}, {"_id": 1}).limit(200)]))
    token = bench_token()
    api = Api(f"mongodb://{HOST}:{port}/{database_name(LOAD_SIZE)}", ["activity_service.asgi:application"],
              DATA.parent / "bench-keyset-api.log")
    shares = {}
    try:
        for name, load in (("mixed load", "MIXED_LOAD"), ("export walks", "EXPORTS")):
            clients = sum(count for _, count, _, _ in globals()[load])
            print(f"\n{name}: {clients} clients on {LOAD_SIZE:,} logs for {seconds} s each way, the API as deployed "
                  f"(2 workers, {os.environ.get('API_DATABASE_TIMEOUT_MS', '2500')} ms database deadline):", flush=True)
            for mode in ("keyset", "page numbers"):
                output = subprocess.run([sys.executable, "-m", "bench.keyset", "walk", api.url, str(seconds), token,
                                         mode, load, str(ids)], cwd=ROOT, capture_output=True, text=True,
                                        check=True).stdout
                summary = json.loads(output.strip().splitlines()[-1])
                total = sum(kind["requests"] for kind in summary.values())
                timeouts = sum(kind["statuses"].get("504", 0) for kind in summary.values())
                shares[(name, mode)] = timeouts / total if total else float("nan")
                print(f"  by {mode}: {total} requests, {timeouts} answered 504 ({shares[(name, mode)]:.1%})",
                      flush=True)
                for label, kind in summary.items():
                    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(kind["statuses"].items()))
                    print(f"    {label:18} {kind['requests']:5} requests ({statuses}), p50 {kind['p50_ms']} ms, "
                          f"p99 {kind['p99_ms']} ms", flush=True)
    finally:
        api.stop()
    share = shares[("mixed load", "keyset")]
    verdict = "met" if share < TARGET_TIMEOUT_SHARE else "missed"
    print(f"  mixed load by keyset, answered 504: {share:.1%} (target < {TARGET_TIMEOUT_SHARE:.0%}: {verdict})")


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "activity_service.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    warnings.filterwarnings("ignore", "No directory at", UserWarning)
    if sys.argv[1:2] == ["walk"]:
        walk_load(sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5], globals()[sys.argv[6]],
                  json.loads(Path(sys.argv[7]).read_text()))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="how long the clients walk each way (default 60)")
    parser.add_argument("--part", choices=("pages", "load", "nx"),
                        help="only part 1 on SecantusDB, only part 2, or only part 3 (nx-27017)")
    arguments = parser.parse_args()
    # The served API shares the benchmark's accounts database and token; no client reaches this throttle rate.
    os.environ["API_THROTTLE_RATE"] = "1000000/second"
    DATA.mkdir(parents=True, exist_ok=True)
    prepare_accounts_database()
    from stack import processes

    if arguments.part in (None, "pages", "load"):
        port = processes.free_port()
        database = processes.database(port, DATA, DATA.parent / "bench-keyset-mongodb.log").start()
        try:
            if arguments.part in (None, "pages"):
                page_medians(port, "SecantusDB", LISTINGS)
            if arguments.part in (None, "load"):
                walking_clients(port, arguments.seconds)
        finally:
            database.stop()
    if arguments.part in (None, "nx"):
        # nx-27017 reads a sorted range in order and stops at the limit, as MongoDB does, but scans the table for
        # an equality (bench/api.py, nx_extra): the unfiltered listing only.
        port = processes.free_port()
        database = processes.nx_database(port, NX_DATA, NX_DATA.parent / "bench-keyset-nx.log").start()
        try:
            page_medians(port, "nx-27017", ["unfiltered"], without_id=True)
        finally:
            database.stop()


if __name__ == "__main__":
    main()
