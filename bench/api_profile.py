"""Where the API's own time goes per request, in one process: CPU time and database round trips.

    python -m bench.api_profile              # CPU per request and round trips, both queries
    python -m bench.api_profile --profile    # and cProfile's top functions for each

The two requests of bench/load's per-request cost (one log by id; `userId`+`action`, a numbered page), as
an all-users token sends them, through Django's test client (every middleware, DRF's authentication, the
throttle and the audit line; no server in front), against SecantusDB with SMALL generated logs in a fresh
folder. Each figure is the least CPU time (`time.process_time`) of REPEAT runs of SAMPLES requests, per
request, beside a bare 404 through Django; CPU time, not wall time, since the machine may be shared. The
database's round trips are counted with pymongo's command monitoring (a public API).
"""

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

SMALL = 5_000
SAMPLES = 300
REPEAT = 7


class RoundTrips:
    """Every command the API's connection sends (pymongo's CommandListener, registered at connect)."""

    def __init__(self):
        from pymongo import monitoring

        class Listener(monitoring.CommandListener):
            def started(listener, event):
                self.commands.append(event.command_name)

            def succeeded(listener, event):
                pass

            def failed(listener, event):
                pass

        self.commands = []
        self.listener = Listener()


def cpu_per_request_ms(call):
    runs = []
    for _ in range(REPEAT):
        started = time.process_time()
        for _ in range(SAMPLES):
            call()
        runs.append((time.process_time() - started) * 1000 / SAMPLES)
    return min(runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions per request")
    parser.add_argument("--only", help="one request's label (e.g. `get by id`), for a sampling profiler")
    arguments = parser.parse_args()
    from stack import processes

    folder = Path(tempfile.mkdtemp(prefix="api-profile-"))
    port = processes.free_port()
    database = processes.database(port, folder / "mongodb", folder / "mongodb.log").start()
    try:
        os.environ.update(DJANGO_SETTINGS_MODULE="activity_service.settings", LOG_LEVEL="WARNING",
                          DATABASE_URL=f"sqlite:///{folder / 'django.sqlite3'}",
                          MONGODB_URI=f"mongodb://{processes.HOST}:{port}/api_profile",
                          API_THROTTLE_RATE="1000000/second")
        run(arguments.profile, arguments.only)
    finally:
        database.stop()


def run(profile, only):
    import mongoengine
    from django.test import Client

    from bench.api import bench_token, fill, prepare_accounts_database
    from logs.storage.documents import ActivityLog

    prepare_accounts_database()
    trips = RoundTrips()
    mongoengine.disconnect()
    mongoengine.connect(host=os.environ["MONGODB_URI"], tz_aware=True, uuidRepresentation="standard",
                        event_listeners=[trips.listener])
    collection = ActivityLog._get_collection()
    fill(collection, SMALL)
    document = collection.find_one({"action": "send"})
    client = Client(headers={"Authorization": f"Token {bench_token()}"})
    paths = {
        "get by id": (f"/user-logs/{document['_id']}", 200),
        "userId+action": (f"/user-logs?userId={document['userId']}&action=send", 200),
        "404 through Django": ("/no-such-path", 404),
    }
    query = {"userId": document["userId"], "action": "send"}
    raw = {  # what bench/load's raw driver sends for the same two answers
        "get by id": lambda: collection.find_one({"_id": document["_id"]}),
        "userId+action": lambda: (list(collection.find(query).sort([("timestamp", -1), ("_id", -1)]).limit(10)),
                                  collection.count_documents(query)),
    }
    print(f"{SMALL:,} logs on SecantusDB; CPU per request, least of {REPEAT} runs of {SAMPLES}:", flush=True)
    for label, (path, status) in paths.items():
        if only and label != only:
            continue
        def call(path=path, status=status):
            response = client.get(path)
            assert response.status_code == status, (path, response.status_code, response.content[:200])
        for _ in range(20):
            call()
        trips.commands.clear()
        call()
        sent = list(trips.commands)
        cpu = cpu_per_request_ms(call)
        own = f" (raw driver {cpu_per_request_ms(raw[label]):.3f} ms)" if label in raw else ""
        print(f"  {label:20} {cpu:.3f} ms{own}; round trips {len(sent)} ({', '.join(sent)})", flush=True)
        if profile:
            profiler = cProfile.Profile()
            profiler.runcall(lambda: [call() for _ in range(SAMPLES)])
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(110)


if __name__ == "__main__":
    main()
