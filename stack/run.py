"""`make run`: the whole system on the local stack, in one terminal; Ctrl-C stops all of it.

Starts the broker and the database (or reuses them if `make services` already runs), then the
consumer, the producer at rate 5 and the API on :8000, each once the one before it is ready.
Every child's output is shown with its name in front.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import processes
from .services import BROKER_PORT, DATABASE_PORT, start_services, stop_services

ROOT = Path(__file__).resolve().parent.parent
API_PORT = int(os.environ.get("API_PORT", 8000))
LOCAL_ACCOUNT = "local"
_print_lock = threading.Lock()


def say(name, line):
    with _print_lock:
        print(f"{name:>9} | {line}", flush=True)


class Child:
    """A `manage.py` command whose output lines are echoed with a name and remembered until seen."""

    def __init__(self, name, *args):
        self.name = name
        self.seen = threading.Event()
        self.marker = None
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # Ctrl-C reaches only us; we stop the children in order
        )
        threading.Thread(target=self._echo, daemon=True).start()

    def _echo(self):
        for line in self.process.stdout:
            say(self.name, line.rstrip())
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
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


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
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


def local_account_token():
    """Migrate Django's tables, then the token of a local account that may read every user's logs
    (the same key on every run: `api_token` prints the existing one)."""
    manage("migrate", "--noinput")
    return manage("api_token", LOCAL_ACCOUNT, "--all-users").split()[-1]


def say_how_to_read(token):
    say("run", f"ready: curl -H \"Authorization: Token {token}\" "
               f"\"http://localhost:{API_PORT}/user-logs?userId=user-1&page=1&limit=10\"")
    say("run", f"browser: set a password once with `.venv/bin/python manage.py changepassword {LOCAL_ACCOUNT}`, "
               f"then log in as {LOCAL_ACCOUNT} at http://localhost:{API_PORT}/api-auth/login/. Ctrl-C stops everything.")


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, interrupt)
    services, children = [], []
    try:
        token = local_account_token()
        if processes.port_open(BROKER_PORT) and processes.port_open(DATABASE_PORT):
            say("run", f"reusing the broker on :{BROKER_PORT} and the database on :{DATABASE_PORT}")
        else:
            services = start_services()
        consumer = Child("consumer", "consume_activity")
        children.append(consumer)
        consumer.wait_for_line("assigned partitions", timeout=90)
        children.append(Child("producer", "produce_activity", "--rate", "5"))
        # As the image does at build time: the API serves the browsable API's and Swagger's assets.
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "collectstatic", "--noinput", "--verbosity", "0"],
                       cwd=ROOT, check=True)
        api = Child("api", "runserver", f"127.0.0.1:{API_PORT}", "--noreload")
        children.append(api)
        wait_for_port(api, API_PORT, timeout=60)
        say_how_to_read(token)
        while all(child.process.poll() is None for child in children):
            time.sleep(0.5)
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
