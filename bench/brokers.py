"""Running a benchmark once per local broker, each in a fresh process, so the figures sit side by side.

BENCH_BROKERS (default `tansu,kafka`) chooses which; each run is the benchmark's own `main` with
LOCAL_BROKER set, on a broker of that kind that it starts itself.
"""

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from stack import processes


def on_each_broker(module, measure):
    """Call `measure()` if this process is one turn of the loop, else rerun `module` once per broker."""
    if os.environ.get("BENCH_ON_BROKER"):
        measure()
        return
    kinds = [kind.strip() for kind in os.environ.get("BENCH_BROKERS", ",".join(processes.BROKERS)).split(",")
             if kind.strip()]
    failed = []
    for kind in kinds:
        print(f"=== on {kind} ===", flush=True)
        result = subprocess.run([sys.executable, "-m", module],
                                env={**os.environ, "LOCAL_BROKER": kind, "BENCH_ON_BROKER": "1"})
        if result.returncode != 0:
            failed.append(kind)
    if failed:
        sys.exit(f"the benchmark failed on {', '.join(failed)}")


@contextlib.contextmanager
def fresh_broker_for_django(prefix, **environment):
    """A fresh broker of LOCAL_BROKER's kind in a scratch folder, and Django set up to use it (`environment`
    added to the process environment first); yields its bootstrap address and stops it on leaving."""
    import django

    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        broker = processes.broker(processes.free_port(), Path(scratch) / "broker.log",
                                  data_dir=Path(scratch) / "broker").start()
        try:
            bootstrap = f"{processes.HOST}:{broker.port}"
            os.environ.update({"KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                               "DJANGO_SETTINGS_MODULE": "activity_service.settings", **environment})
            django.setup()
            yield bootstrap
        finally:
            broker.stop()
