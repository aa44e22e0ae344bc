"""Capacity model: how many partitions, consumers and shards a load needs, from measured figures.

    python -m bench.capacity          # or: make capacity
    python -m bench.capacity --shard-inserts-per-second 20000 --shard-disk-gb 4000 --retention-days 365

Reads what `bench/scaleout.py` and `bench/storage.py` wrote to artifacts/bench/ (run `make bench-scaleout
bench-storage` first) and prints the measured figures, the assumptions, and for 1,000, 10,000 and
100,000 events/s and the retention period: consumer processes and their CPU, partitions, and shards
(by insert rate and by disk). Every assumption is a flag, so an operator can put in their own cluster's
figures (above all the insert rate of one shard, which the local stand-ins cannot tell).
"""

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "bench"
LOADS = (1_000, 10_000, 100_000)
SECONDS_PER_DAY = 86_400
SIZE_SERVER = "secantusdb"  # WiredTiger underneath, and it reports index sizes (nx-27017 reports none)


def load_figures():
    try:
        scaleout = json.loads((ARTIFACTS / "scaleout.json").read_text())
        storage = json.loads((ARTIFACTS / "storage.json").read_text())
    except FileNotFoundError as exc:
        raise SystemExit(f"{exc.filename} is missing: run `make bench-scaleout bench-storage` first") from None
    return scaleout, storage


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--headroom", type=float, default=2.0,
                        help="capacity over the steady load, to catch up after an outage "
                             "(default 2: run at half capacity)")
    parser.add_argument("--retention-days", type=int, default=365, help="logs kept (default 365)")
    parser.add_argument("--replicas", type=int, default=3, help="replica-set members per shard (default 3)")
    parser.add_argument("--shard-disk-gb", type=float, default=2000,
                        help="usable data disk per replica-set member, in GB (default 2000)")
    parser.add_argument("--shard-inserts-per-second", type=float, default=None,
                        help="documents/s one shard's primary inserts with these indexes (default: the rate measured "
                             "on the local SecantusDB, a stand-in; put in your cluster's measured figure)")
    return parser.parse_args(argv)


def per_consumer_figures(scaleout):
    """Per server: the measured rate of 1, 2, 3 consumers, and the consumer CPU per event (median of runs)."""
    servers = {}
    for run in scaleout["runs"]:
        entry = servers.setdefault(run["server"], {"rates": {}, "cpu_ms": [], "limits": {}})
        entry["rates"][run["consumers"]] = run["events_per_second"]
        entry["cpu_ms"].append(run["consumer_cpu_ms_per_event"])
        entry["limits"][run["consumers"]] = run["limit"]
    for entry in servers.values():
        entry["cpu_ms"] = sorted(entry["cpu_ms"])[len(entry["cpu_ms"]) // 2]
    return servers


def bytes_per_log(storage, *, retention):
    sizes = storage["servers"][SIZE_SERVER]["bytes_per_log"]
    application = sizes["application indexes"]
    shard_key = sizes["+ shard-key index"]["all_indexes"] - application["all_indexes"]
    ttl = sizes["+ retention TTL index"]["all_indexes"] - application["all_indexes"] if retention else 0
    return {"document": application["document"], "indexes": application["all_indexes"] + shard_key + ttl}


def model(load, *, consumer_rate, cpu_ms, shard_rate, log_bytes, options):
    needed = load * options.headroom
    consumers = math.ceil(needed / consumer_rate)
    logs = load * SECONDS_PER_DAY * options.retention_days
    stored_bytes = logs * log_bytes
    return {
        "load": load,
        "consumers": consumers,
        # Twice the consumers: room to add consumers later without adding partitions (which moves keys).
        "partitions": max(6, 2 * consumers),
        "consumer_cores": load * cpu_ms / 1000,
        "shards_for_inserts": math.ceil(needed / shard_rate),
        "logs": logs,
        "stored_tb": stored_bytes / 1e12,
        "shards_for_disk": math.ceil(stored_bytes / (options.shard_disk_gb * 1e9)),
        "disk_tb_all_replicas": stored_bytes * options.replicas / 1e12,
    }


def main(argv=None):
    options = parse_arguments(argv)
    scaleout, storage = load_figures()
    servers = per_consumer_figures(scaleout)
    print(f"Measured (scale-out {scaleout['measured_at']}, storage {storage['measured_at']}; a shared 2-core machine):")
    for name, entry in servers.items():
        rates = ", ".join(f"{count}: {rate:,.0f}/s" for count, rate in sorted(entry["rates"].items()))
        print(f"  {name:<11} consumers in one group on 6 partitions -> {rates}; "
              f"consumer CPU {entry['cpu_ms']:.3f} ms/event")
        print(f"              limit with 3 consumers: {entry['limits'][max(entry['limits'])]}")
    for name, figures in storage["servers"].items():
        rates, relative = figures["inserts_per_second"], figures["relative_to_application_indexes"]
        print(f"  {name:<11} pymongo inserts/s (best; median ratio to the application indexes): "
              + ", ".join(f"{variant} {rate:,.0f} ({relative[variant]:.2f}x)" for variant, rate in rates.items()))
    sizes = bytes_per_log(storage, retention=options.retention_days > 0)
    cpu_ms = servers[SIZE_SERVER]["cpu_ms"]
    consumer_rate = 1000 / cpu_ms
    shard_rate = (options.shard_inserts_per_second
                  or storage["servers"][SIZE_SERVER]["inserts_per_second"]["+ shard-key index"])
    log_bytes = sizes["document"] + sizes["indexes"]
    print(f"""
Assumptions:
  - one consumer process does at most {consumer_rate:,.0f} events/s: one core / {cpu_ms:.3f} ms of consumer CPU per
    event (measured on {SIZE_SERVER}), as long as the database keeps up (enough shards); a partition is read by
    one consumer, so that is also the most one partition carries (Kafka itself carries far more per partition);
  - every tier runs at 1/{options.headroom:g} of its capacity (headroom {options.headroom:g}x to catch up after an \
outage);
  - partitions: twice the consumers (at least 6), so consumers can be added later without adding partitions,
    which would move keys and so users' ordering once;
  - one shard inserts {shard_rate:,.0f} documents/s with the application's indexes and the shard-key index
    {'(--shard-inserts-per-second)' if options.shard_inserts_per_second else
     '(measured on the local SecantusDB, a stand-in: real MongoDB on server hardware is expected'}
    {'' if options.shard_inserts_per_second else
     'to be far faster, so the insert column is an upper bound; put in a figure measured on your cluster)'};
  - a stored log takes {log_bytes:,.0f} bytes: document {sizes['document']:.0f} + indexes {sizes['indexes']:.0f} \
(application,
    shard key{', TTL' if options.retention_days > 0 else ''}), as SecantusDB's collStats reports them, without \
WiredTiger compression
    (real MongoDB compresses documents with snappy and index keys by prefix: an upper bound);
  - retention {options.retention_days} days; {options.replicas} replica-set members per shard, \
{options.shard_disk_gb:,.0f} GB usable disk each.
""")
    header = (f"{'events/s':>9} | {'consumers':>9} | {'consumer CPU':>12} | {'partitions':>10} | "
              f"{'shards (inserts)':>16} | "
              f"{'logs kept':>9} | {'data+indexes':>12} | {'shards (disk)':>13} | {'disk, all replicas':>18}")
    print(header)
    print("-" * len(header))
    for load in LOADS:
        row = model(load, consumer_rate=consumer_rate, cpu_ms=cpu_ms, shard_rate=shard_rate, log_bytes=log_bytes,
                    options=options)
        print(f"{row['load']:>9,} | {row['consumers']:>9,} | {row['consumer_cores']:>7.1f} cores | "
              f"{row['partitions']:>10,} | "
              f"{row['shards_for_inserts']:>16,} | {row['logs'] / 1e9:>6.1f} bn | {row['stored_tb']:>9.1f} TB | "
              f"{row['shards_for_disk']:>13,} | {row['disk_tb_all_replicas']:>15.1f} TB")
    print("\nShards needed: the larger of the two shard columns. Consumers: as many processes as the column, "
          "spread over\n"
          "machines with that many cores free; never more consumers than partitions.")


if __name__ == "__main__":
    main()
