"""`make run`: the whole system on the local stack, in one terminal; Ctrl-C stops all of it.

Starts the broker and the database (or reuses them if `make services` already runs), then the
consumer, the producer at rate 5 and the API on :8000, each once the one before it is ready.
Every child's output is shown with its name in front. The children die with this supervisor however
it ends (Ctrl-C, SIGTERM, a closed terminal, a broken pipe on its output, even SIGKILL), so a second
`make run` finds its ports free.
"""

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from logs.pipeline.consuming import SUMMARY_EVERY_SECONDS

from . import processes
from .services import BROKER_PORT, DATA_DIR, DATABASE_PORT, start_services, stop_services

ROOT = Path(__file__).resolve().parent.parent
API_PORT = int(os.environ.get("API_PORT", 8000))
LOCAL_ACCOUNT = "local"
# The producer's progress comes at the consumer's cadence (its summary line), so that the two together
# leave the ready line on screen; the ready line comes back before a screenful of them has passed.
PROGRESS_EVERY_SECONDS = SUMMARY_EVERY_SECONDS
REMIND_EVERY_SECONDS = 6 * SUMMARY_EVERY_SECONDS
METRICS_PORT_ATTEMPTS = 3
# The commands talk to the servers this supervisor started (or found) on the local ports.
LOCAL_STACK_ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "KAFKA_BOOTSTRAP_SERVERS": f"{processes.HOST}:{BROKER_PORT}",
                   "MONGODB_URI": f"mongodb://{processes.HOST}:{DATABASE_PORT}/activity_logs",
                   # Django's accounts and tokens beside the other local data (the settings' default file
                   # when LOCAL_DATA_DIR is not set, so `manage.py api_token local` finds the same account).
                   "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'django.sqlite3'}"}
_print_lock = threading.Lock()


_output_gone = threading.Event()


def say(name, line):
    with _print_lock:
        if _output_gone.is_set():
            return
        try:
            print(f"{name:>9} | {line}", flush=True)
        except BrokenPipeError:
            # Whoever read our output is gone (`make run | head`, a closed terminal): stop everything,
            # once. The main thread is the one that stops the children, so tell it.
            _output_gone.set()
            os.kill(os.getpid(), signal.SIGTERM)


class Child:
    """A `manage.py` command whose output lines are echoed with a name and remembered until seen."""

    def __init__(self, name, *args):
        self.name = name
        self.seen = threading.Event()
        self.marker = None
        self.recent = collections.deque(maxlen=20)  # its last lines, for the supervisor to read why it stopped
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=LOCAL_STACK_ENV,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the children in order
            preexec_fn=processes.die_with_parent,  # and if we are killed outright, they die with us
        )
        self.echo = threading.Thread(target=self._echo, daemon=True)
        self.echo.start()

    def _echo(self):
        for line in self.process.stdout:
            say(self.name, line.rstrip())
            self.recent.append(line)
            if self.marker and self.marker in line:
                self.seen.set()

    def wait_for_line(self, marker, timeout):
        self.marker = marker
        deadline = time.monotonic() + timeout
        while not self.seen.wait(0.2):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.process.returncode}; see its output above")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not print {marker!r} within {timeout}s")

    def stop(self):
        if self.process.poll() is None:
            # SIGTERM, which every child stops on as on Ctrl-C: a shell that starts `make run` in the
            # background (a script, CI) has it ignore SIGINT, an ignored signal stays ignored in its
            # children, and Django's runserver would only go at the kill below.
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_consumer():
    """The consumer, once it has its partitions, and its metrics port.

    9100, the consumer's default, is also node_exporter's: locally the metrics take a free port, unless
    METRICS_PORT names one. Another process may take a free port before the consumer binds it; then the
    consumer says so and stops, and it is started again on another.
    """
    for attempt in range(1, METRICS_PORT_ATTEMPTS + 1):
        metrics_port = os.environ.get("METRICS_PORT") or str(processes.free_port())
        consumer = Child("consumer", "consume_activity", "--metrics-port", metrics_port)
        try:
            consumer.wait_for_line("assigned partitions", timeout=90)
            return consumer, metrics_port
        except RuntimeError:
            consumer.echo.join(5)  # every line it printed before it stopped
            taken = consumer.process.poll() is not None and any(
                "cannot serve metrics on port" in line for line in consumer.recent)
            if not taken or os.environ.get("METRICS_PORT") or attempt == METRICS_PORT_ATTEMPTS:
                consumer.stop()
                raise


def wait_for_port(child, port, timeout):
    deadline = time.monotonic() + timeout
    while not processes.port_open(port):
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited with code {child.process.returncode}; see its output above")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} did not listen on port {port} within {timeout}s")
        time.sleep(0.1)


def manage(*args):
    """Run a short `manage.py` command to completion; its output, for the caller to use."""
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=LOCAL_STACK_ENV, check=True,
                          capture_output=True, text=True).stdout


def local_account_token():
    """Migrate Django's tables, then the token of a local account that may read every user's logs
    (the same key on every run: `api_token` prints the existing one)."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    manage("migrate", "--noinput")
    return manage("api_token", LOCAL_ACCOUNT, "--all-users").split()[-1]


def ready_line(token):
    return (f"ready: curl -H \"Authorization: Token {token}\" "
            f"\"http://localhost:{API_PORT}/user-logs?userId=user-1&page=1&limit=10\"")


def say_how_to_read(token):
    rule = "=" * 100
    say("run", rule)
    say("run", ready_line(token))
    say("run", f"browser: set a password once with `.venv/bin/python manage.py changepassword {LOCAL_ACCOUNT}`, "
               f"then log in as {LOCAL_ACCOUNT} at http://localhost:{API_PORT}/api-auth/login/. "
               "Ctrl-C stops everything.")
    say("run", rule)


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)  # the terminal was closed
    services, children = [], []
    try:
        token = local_account_token()
        if processes.port_open(BROKER_PORT) and processes.port_open(DATABASE_PORT):
            say("run", f"reusing the broker on :{BROKER_PORT} and the database on :{DATABASE_PORT}")
        else:
            services = start_services()
        consumer, metrics_port = start_consumer()
        children.append(consumer)
        children.append(Child("producer", "produce_activity", "--rate", "5",
                              "--progress-every", f"{PROGRESS_EVERY_SECONDS:g}"))
        # As the image does at build time: the API serves the browsable API's and Swagger's assets.
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "collectstatic", "--noinput", "--verbosity", "0"],
                       cwd=ROOT, env=LOCAL_STACK_ENV, check=True)
        api = Child("api", "runserver", f"127.0.0.1:{API_PORT}", "--noreload")
        children.append(api)
        wait_for_port(api, API_PORT, timeout=60)
        say("run", f"consumer metrics: http://127.0.0.1:{metrics_port}/metrics")
        say_how_to_read(token)
        next_reminder = time.monotonic() + REMIND_EVERY_SECONDS
        while all(child.process.poll() is None for child in children):
            time.sleep(0.5)
            if time.monotonic() >= next_reminder:
                say("run", ready_line(token))
                next_reminder += REMIND_EVERY_SECONDS
        stopped = [child.name for child in children if child.process.poll() is not None]
        say("run", f"{', '.join(stopped)} exited; stopping the rest")
        return 1
    except KeyboardInterrupt:
        say("run", "stopping")
        return 0
    except RuntimeError as exc:
        say("run", f"cannot start: {exc}")
        return 1
    except subprocess.CalledProcessError as exc:
        say("run", f"cannot start: {' '.join(exc.cmd[1:])} failed:\n{exc.stdout}{exc.stderr}")
        return 1
    finally:
        for child in reversed(children):
            child.stop()
        stop_services(services)
        say("run", "stopped")


if __name__ == "__main__":
    sys.exit(main())
