"""What each secondary index of `ActivityLog` buys the API, beside what it costs at ingest.

    python -m bench.indexes            # or: make bench-indexes   (DOCUMENTS=20000 by default)

On a fresh local database filled with DOCUMENTS generated logs (bench.api's generator), for each
secondary index: the plan `explain()` chooses and the median time of the API query it serves (one
page newest first plus its count), with every index and then with that one index dropped. The
insert cost of each index is printed by bench/ingest.py. The machine may be shared: compare
figures from the same run only.
"""

import os
import tempfile
from pathlib import Path

DOCUMENTS = int(os.environ.get("DOCUMENTS", 20_000))
NEWEST_FIRST = [("timestamp", -1), ("_id", -1)]
# The query each index is there for (docs/contract.md "API": the filters userId, action, from/to).
SERVED_QUERY = {
    "newest_first": {},
    "user_newest_first": {"userId": "user-1"},
    "action_newest_first": {"action": "send"},
    "user_action_newest_first": {"userId": "user-1", "action": "send"},
}


def page_and_count(collection, query):
    list(collection.find(query).sort(NEWEST_FIRST).skip(20).limit(10))
    collection.count_documents(query) if query else collection.estimated_document_count()


def chosen_index(collection, query):
    plan = collection.database.command("explain", {"find": collection.name, "filter": query,
                                                   "sort": dict(NEWEST_FIRST), "limit": 10})
    text = str(plan.get("queryPlanner", {}).get("winningPlan", plan))
    names = [name for name in SERVED_QUERY if f"'{name}'" in text]
    return names[0] if names else ("collection scan" if "COLLSCAN" in text else "another plan")


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "activity_service.settings")
    import django

    django.setup()
    from pymongo import MongoClient

    from bench.api import generated_documents, sequential_median_ms
    from logs.storage.documents import ActivityLog
    from stack import processes

    with tempfile.TemporaryDirectory(prefix="bench-indexes-") as scratch:
        database = processes.database(processes.free_port(), Path(scratch) / "db", Path(scratch) / "db.log").start()
        try:
            collection = MongoClient(f"mongodb://{processes.HOST}:{database.port}/")["bench_indexes"]["logs"]
            specs = {spec["name"]: spec for spec in ActivityLog._meta["index_specs"]}
            for spec in specs.values():
                collection.create_index(spec["fields"], name=spec["name"])
            documents = list(generated_documents(DOCUMENTS, seed=8))
            for first in range(0, len(documents), 1000):
                collection.insert_many(documents[first:first + 1000], ordered=False)
            print(f"index benefit on SecantusDB, {DOCUMENTS:,} documents; page 3 of 10 plus its count, median ms")
            for name, query in SERVED_QUERY.items():
                with_index = sequential_median_ms(lambda: page_and_count(collection, query), 7)
                collection.drop_index(name)
                plan_without = chosen_index(collection, query)
                without = sequential_median_ms(lambda: page_and_count(collection, query), 7)
                collection.create_index(specs[name]["fields"], name=name)
                print(f"  {name:<26} {str(query):<40} with it {with_index:8.1f} ms; without it {without:8.1f} ms "
                      f"({plan_without})", flush=True)
        finally:
            database.stop()


if __name__ == "__main__":
    main()
