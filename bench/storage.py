"""Storage benchmark: what each index costs an insert, and how many bytes a stored log takes.

    python -m bench.storage           # or: make bench-storage   (STORAGE_EVENTS=3000 for a quick look)

On each local MongoDB-protocol server (SecantusDB, nx-27017), pymongo inserts the same generated
documents (`ActivityLog.mongo_document`, batches of 500 like the consumer, unordered) into fresh
collections with:
  - only `_id` (the raw limit of the server);
  - the application's indexes (`ActivityLog.meta`), what the consumer writes into;
  - those plus the retention TTL index (`ACTIVITY_LOG_RETENTION_DAYS` set);
  - those plus the shard-key index of deploy/mongodb (what a sharded cluster writes into);
  - the previous layout: the same logs with an ObjectId `_id`, the eventId in a field of its own and
    the unique index on it that exactly-once rested on before `_id` became the eventId.
On nx-27017 the compound indexes leave out their final `_id` (as in bench/api.py: nx-27017 0.8.1
accepts such an index, then fails every insert). The variants run in turn, five times; it prints the
best rate of each and the median of its ratio to the application-index rate of the same round (the
machine may be shared: a ratio within one round is what survives its drifting load). Then
`collStats` of the application-index collection gives the bytes per log: document and each index.
The figures go to artifacts/bench/storage.json for `bench/capacity.py`.
"""

import itertools
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench.ingest import setup_django

ROOT = Path(__file__).resolve().parent.parent
EVENTS = int(os.environ.get("STORAGE_EVENTS", 10_000))
BATCH = 500
ROUNDS = 5
RESULTS = ROOT / "artifacts" / "bench" / "storage.json"
PREVIOUS_LAYOUT = "previous layout"


def application_indexes(*, without_id):
    from bench.api import index_keys
    from logs.storage.documents import ActivityLog

    return [{"key": dict(index_keys(spec, without_id=without_id)),
             **{name: value for name, value in spec.items() if name != "fields"}}
            for spec in ActivityLog._meta["index_specs"]]


def variants(*, without_id):
    from logs.storage.retention import RETENTION_INDEX_NAME, SECONDS_PER_DAY

    shard_layout = json.loads((ROOT / "deploy" / "mongodb" / "activity_logs.indexes.json").read_text())
    application = application_indexes(without_id=without_id)
    retention = {"key": {"timestamp": 1}, "name": RETENTION_INDEX_NAME, "expireAfterSeconds": 365 * SECONDS_PER_DAY}
    shard_key = [{"key": {"userId": 1} if without_id else shard_layout["shardKey"], "name": "shard_key"}]
    return {
        "_id only": [],
        "application indexes": application,
        "+ retention TTL index": application + [retention],
        "+ shard-key index": application + shard_key,
        PREVIOUS_LAYOUT: application + [{"key": {"eventId": 1}, "name": "eventId_1", "unique": True}],
    }


def previous_layout_documents(documents):
    """The same logs as the previous version stored them: an ObjectId `_id`, the eventId in its own field."""
    from bson import ObjectId

    return [{**document, "_id": ObjectId(), "eventId": document["_id"]} for document in documents]


def insert_rate(database, indexes, documents):
    collection = database[f"bench_storage_{uuid.uuid4().hex[:8]}"]
    for index in indexes:
        collection.create_index(list(index["key"].items()),
                                **{name: value for name, value in index.items() if name != "key"})
    started = time.monotonic()
    for first in range(0, len(documents), BATCH):
        collection.insert_many(documents[first:first + BATCH], ordered=False)
    rate = len(documents) / (time.monotonic() - started)
    return rate, collection


def bytes_per_log(collection):
    stats = collection.database.command("collStats", collection.name)
    count = stats["count"] or 1
    return {"count": stats["count"], "document": stats["size"] / count, "storage": stats["storageSize"] / count,
            "indexes": {name: size / count for name, size in (stats.get("indexSizes") or {}).items()},
            "all_indexes": stats.get("totalIndexSize", 0) / count}


def extra_index_bytes(sizes, variant):
    """Bytes per log of the one index `variant` adds to the application's."""
    return sizes[variant]["all_indexes"] - sizes["application indexes"]["all_indexes"]


def measure(server_name, server, documents, *, without_id=False):
    from pymongo import MongoClient

    print(f"  {server_name}", flush=True)
    client = MongoClient(f"mongodb://127.0.0.1:{server.port}/", uuidRepresentation="standard")
    database = client[f"bench_storage_{uuid.uuid4().hex[:6]}"]
    best, sizes, ratios = {}, {}, {}
    shaped = {PREVIOUS_LAYOUT: previous_layout_documents(documents)}
    for _ in range(ROUNDS):
        rates = {}
        for name, indexes in variants(without_id=without_id).items():
            rates[name], collection = insert_rate(database, indexes, shaped.get(name, documents))
            sizes.setdefault(name, bytes_per_log(collection))
            collection.drop()
            best[name] = max(best.get(name, 0), rates[name])
        for name, rate in rates.items():
            ratios.setdefault(name, []).append(rate / rates["application indexes"])
    # The ratio within a round cancels the load that drifts between rounds on a shared machine.
    relative = {name: statistics.median(values) for name, values in ratios.items()}
    for name, rate in best.items():
        print(f"    {name:<24} {rate:>8,.0f} documents/s (median of rounds: {relative[name]:.2f}x the application "
              f"indexes; rounds {min(ratios[name]):.2f}-{max(ratios[name]):.2f})", flush=True)
    application = sizes["application indexes"]
    print(f"    bytes per log: document {application['document']:.0f}, application indexes "
          f"{application['all_indexes']:.0f} ("
          + ", ".join(f"{name} {size:.0f}" for name, size in application["indexes"].items())
          + f"), retention TTL index {extra_index_bytes(sizes, '+ retention TTL index'):.0f}, shard-key index "
          f"{extra_index_bytes(sizes, '+ shard-key index'):.0f}", flush=True)
    client.close()
    return {"inserts_per_second": best, "relative_to_application_indexes": relative, "bytes_per_log": sizes}


def main():
    from stack import processes

    setup_django({"LOG_LEVEL": "WARNING"})
    from logs.pipeline.generator import generate_activity
    from logs.storage.documents import ActivityLog

    documents = [ActivityLog.mongo_document(event, partition=0, offset=offset)
                 for offset, event in enumerate(itertools.islice(generate_activity(users=1000, seed=2026), EVENTS))]
    print(f"storage benchmark: {EVENTS:,} documents, batches of {BATCH}, best of {ROUNDS} rounds", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as scratch:
        scratch = Path(scratch)
        servers = {
            "secantusdb": processes.database(processes.free_port(), scratch / "db", scratch / "db.log"),
            "nx-27017": processes.nx_database(processes.free_port(), scratch / "nx", scratch / "nx.log"),
        }
        for name, server in servers.items():
            server.start()
            try:
                results[name] = measure(name, server, documents, without_id=name == "nx-27017")
            finally:
                server.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "documents": EVENTS, "servers": results}, indent=2))
    print(f"  figures written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
