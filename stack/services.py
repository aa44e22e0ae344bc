"""`make services`: the local broker (:9092) and database (:27017) in the foreground; Ctrl-C stops both.

The stand-in for `docker-compose up kafka mongodb`. The database keeps its data in .data/mongodb.
The broker is LOCAL_BROKER's: Tansu (the default) keeps messages in memory, so a restart empties the
topics; Apache Kafka (`kafka`) keeps topics, messages and committed offsets in .data/kafka.
"""

import os
import signal
import sys
import time
from pathlib import Path

from . import processes

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("LOCAL_DATA_DIR") or ROOT / ".data")
BROKER_PORT = int(os.environ.get("LOCAL_KAFKA_PORT", 9092))
DATABASE_PORT = int(os.environ.get("LOCAL_MONGODB_PORT", 27017))


def start_services():
    """Start both servers (logs under .data/) and return them, broker first."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    started = []
    try:
        broker = processes.broker(BROKER_PORT, DATA_DIR / "broker.log", data_dir=DATA_DIR / "kafka")
        started.append(broker.start())
        print(f"{broker.name} ready on {processes.HOST}:{BROKER_PORT}  (log: {DATA_DIR / 'broker.log'})", flush=True)
        started.append(processes.database(DATABASE_PORT, DATA_DIR / "mongodb", DATA_DIR / "mongodb.log").start())
        print(f"mongodb (secantusdb) ready on {processes.HOST}:{DATABASE_PORT}  (data: {DATA_DIR / 'mongodb'})",
              flush=True)
    except RuntimeError:
        stop_services(started)
        raise
    return started


def stop_services(servers):
    for server in reversed(servers):
        server.stop()


def main():
    try:
        servers = start_services()
    except RuntimeError as exc:
        sys.exit(f"cannot start the local services: {exc}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("services running; Ctrl-C stops them", flush=True)
    try:
        while all(server.running for server in servers):
            time.sleep(0.5)
        for server in servers:
            if not server.running:
                print(f"{server.name} exited unexpectedly; see the logs in {DATA_DIR}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop_services(servers)
        print("services stopped", flush=True)


if __name__ == "__main__":
    main()
