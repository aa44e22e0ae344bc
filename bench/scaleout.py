"""Scale-out benchmark: 1, 2 and 3 `consume_activity` processes in one group on a 6-partition topic.

    python -m bench.scaleout          # or: make bench-scaleout (also run by make bench-ingest)
    SCALEOUT_EVENTS=12000 python -m bench.scaleout      # a quick look

On each local MongoDB-protocol server the project knows (SecantusDB, nx-27017), beside a fresh local
broker: the events are published once; then for each consumer count a new group reads all of them
into a new database. The rate is the aggregate stored rate between 10% and 90% of the events (read
from each consumer's own metrics endpoint), which leaves out the group join and the tail where the
consumer with the smallest partitions has finished. Over the same window it reads the CPU time of
every consumer, of the database server and of the broker (/proc, with their child processes), and
of the whole machine, and says where the limit sits. The figures go to artifacts/bench/scaleout.json,
from which `bench/capacity.py` builds the capacity model.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.ingest import CLOCK_TICKS, cpu_seconds, publish, setup_django, stored_so_far

ROOT = Path(__file__).resolve().parent.parent
EVENTS = int(os.environ.get("SCALEOUT_EVENTS", 30_000))
PARTITIONS = 6
CONSUMER_COUNTS = (1, 2, 3)
WINDOW = (0.1, 0.9)  # the share of the events between which the rate and the CPU are measured
RESULTS = ROOT / "artifacts" / "bench" / "scaleout.json"
CONSUME_ON_NX = "consume-on-nx"
# Busy shares that count as the limit: a process at 70% of the one core it can use (these servers are Python
# processes), the machine at 90% of all its cores.
PROCESS_SATURATED = 0.7
MACHINE_SATURATED = 0.9


def machine_busy_seconds():
    """CPU seconds every core of the machine spent busy so far (every process, this benchmark's or not)."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


@dataclass
class Run:
    server: str
    consumers: int
    partitions: int
    events: int
    events_per_second: float
    consumer_cores: list  # CPU cores each consumer process used over the window
    database_cores: float
    broker_cores: float
    machine_cores_busy: float
    machine_cores: int
    consumer_cpu_ms_per_event: float
    limit: str


def where_the_limit_sits(consumer_cores, database_cores, machine_busy, cores):
    """The first saturated resource, in the order that explains the others."""
    if machine_busy >= MACHINE_SATURATED * cores:
        return (f"the machine's CPU ({machine_busy:.2f} of {cores} cores busy; consumers, database, broker "
                "and everything else on it share them)")
    if database_cores >= PROCESS_SATURATED:
        return f"the database server ({database_cores:.2f} cores; one process, adding consumers does not add to it)"
    if consumer_cores and min(consumer_cores) >= PROCESS_SATURATED:
        return "the consumers' CPU (each process uses about a core: more consumers, or partitions, go faster)"
    return "not CPU: each process waits on another (round trips to the database and broker)"


def sample(children, ports, database, broker):
    stored = sum(stored_so_far(f"http://127.0.0.1:{port}/metrics") or 0 for port in ports)
    return {"time": time.monotonic(), "stored": stored, "consumers": [cpu_seconds(child.pid) for child in children],
            "database": cpu_seconds(database.process.pid), "broker": cpu_seconds(broker.process.pid),
            "machine": machine_busy_seconds()}


def consume_on_nx(arguments):
    """`consume_activity` with the compound indexes' final `_id` left out: nx-27017 0.8.1 accepts such an
    index and then fails every insert (see bench/api.py). A stand-in's quirk, worked around here only."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "activity_service.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from bench.api import index_keys
    from logs.storage.documents import ActivityLog

    for spec in ActivityLog._meta["index_specs"]:
        spec["fields"] = index_keys(spec, without_id=True)
    call_command("consume_activity", *arguments)


def consume_with(server_name, count, *, env, database, broker, log_dir):
    """Start `count` consumers in a new group; return the samples at the window's start and end."""
    from stack import processes

    ports = [processes.free_port() for _ in range(count)]
    children = []
    for number, port in enumerate(ports):
        log = open(log_dir / f"consumer-{count}-{number}.log", "w")
        arguments = ["--idle-timeout", "5", "--metrics-port", str(port)]
        command = ([sys.executable, "-m", "bench.scaleout", CONSUME_ON_NX, *arguments] if server_name == "nx-27017"
                   else [sys.executable, str(ROOT / "manage.py"), "consume_activity", *arguments])
        children.append(subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=log,
                                         stderr=subprocess.STDOUT))
        log.close()
    start = end = None
    try:
        while end is None:
            current = sample(children, ports, database, broker)
            if start is None and current["stored"] >= WINDOW[0] * EVENTS:
                start = current
            elif start is not None and current["stored"] >= WINDOW[1] * EVENTS:
                end = current
            for child in children:
                if child.poll() is not None:
                    raise SystemExit(f"a consumer exited early with {child.returncode}; see {log_dir}")
            time.sleep(0.2)
        for child in children:
            child.wait(120)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return start, end


def measure(server_name, database_factory):
    from stack import processes

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as scratch:
        scratch = Path(scratch)
        broker = processes.broker(processes.free_port(), scratch / "broker.log").start()
        database = database_factory(processes.free_port(), scratch).start()
        try:
            bootstrap = f"{processes.HOST}:{broker.port}"
            base = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC": "bench-scaleout",
                    "KAFKA_DLQ_TOPIC": "bench-scaleout.dlq", "KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
                    "KAFKA_SESSION_TIMEOUT_MS": "6000", "LOG_LEVEL": "WARNING",
                    "MONGODB_URI": f"mongodb://{processes.HOST}:{database.port}/bench_scaleout_setup"}
            setup_django(base)
            from django.conf import settings

            from logs.pipeline.broker import ensure_topics

            settings.KAFKA_BOOTSTRAP_SERVERS = bootstrap  # a second server's run: settings were read by the first
            ensure_topics(base["KAFKA_TOPIC"], base["KAFKA_DLQ_TOPIC"], partitions=PARTITIONS)
            publish(base["KAFKA_TOPIC"], EVENTS)
            for count in CONSUMER_COUNTS:
                env = {**base, "KAFKA_CONSUMER_GROUP": f"bench-scaleout-{count}",
                       "MONGODB_URI": f"mongodb://{processes.HOST}:{database.port}/bench_scaleout_{count}"}
                start, end = consume_with(server_name, count, env=env, database=database, broker=broker,
                                          log_dir=scratch)
                runs.append(summarize(server_name, count, start, end))
                print(describe(runs[-1]), flush=True)
        finally:
            database.stop()
            broker.stop()
    return runs


def summarize(server_name, count, start, end):
    elapsed = end["time"] - start["time"]
    stored = end["stored"] - start["stored"]
    consumer_cores = [(after - before) / elapsed for before, after in zip(start["consumers"], end["consumers"])]
    database_cores = (end["database"] - start["database"]) / elapsed
    machine_busy = (end["machine"] - start["machine"]) / elapsed
    cores = os.cpu_count()
    consumer_cpu = sum(after - before for before, after in zip(start["consumers"], end["consumers"]))
    return Run(server=server_name, consumers=count, partitions=PARTITIONS, events=EVENTS,
               events_per_second=stored / elapsed, consumer_cores=[round(value, 3) for value in consumer_cores],
               database_cores=round(database_cores, 3),
               broker_cores=round((end["broker"] - start["broker"]) / elapsed, 3),
               machine_cores_busy=round(machine_busy, 3), machine_cores=cores,
               consumer_cpu_ms_per_event=1000 * consumer_cpu / stored,
               limit=where_the_limit_sits(consumer_cores, database_cores, machine_busy, cores))


def describe(run):
    consumers = " + ".join(f"{value:.2f}" for value in run.consumer_cores)
    return (f"  {run.server:<10} {run.consumers} consumer{'s' if run.consumers > 1 else ' '} "
            f"{run.events_per_second:>7,.0f} events/s | CPU cores: consumers {consumers}, database "
            f"{run.database_cores:.2f}, broker {run.broker_cores:.2f}, machine {run.machine_cores_busy:.2f}/"
            f"{run.machine_cores} | {run.consumer_cpu_ms_per_event:.3f} consumer CPU ms/event\n"
            f"             limit: {run.limit}")


def main():
    from stack import processes

    servers = {
        "secantusdb": lambda port, scratch: processes.database(port, scratch / "db", scratch / "db.log"),
        "nx-27017": lambda port, scratch: processes.nx_database(port, scratch / "nx", scratch / "nx.log"),
    }
    print(f"scale-out benchmark: {EVENTS:,} events on {PARTITIONS} partitions, consumers "
          f"{', '.join(map(str, CONSUMER_COUNTS))} in one group, on {os.cpu_count()} CPU cores", flush=True)
    runs = []
    for name, factory in servers.items():
        runs.extend(measure(name, factory))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "runs": [asdict(run) for run in runs]}, indent=2))
    print(f"  figures written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    if sys.argv[1:2] == [CONSUME_ON_NX]:
        consume_on_nx(sys.argv[2:])
    else:
        main()
