"""The processes the tests run beside the broker and the database: the production API, `manage.py`
commands, Django's own tables for them; and `frozen`, any of them made to hang."""

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from stack import processes
from tests.support import ROOT
from tests.support.http import http_json
from tests.support.waiting import wait_for

# The API exactly as the image, docker-compose and Kubernetes start it (Dockerfile CMD).
PRODUCTION_API_COMMAND = ["gunicorn", "--config", "gunicorn.conf.py", "activity_service.asgi:application"]


@contextlib.contextmanager
def frozen(server):
    """SIGSTOP a server's process group, SIGCONT on leaving: its connections stay open and nothing
    answers on them, like a peer that hangs (not one that is down)."""
    group = os.getpgid(server.process.pid)
    os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(group, signal.SIGCONT)


class ManagePy:
    """Runs `python manage.py ...` as a real child process with `env` over this process's environment;
    `start`ed ones write their output to a file in `log_dir`."""

    def __init__(self, env, log_dir=None):
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.children = []

    def command(self, *args):
        return [sys.executable, str(ROOT / "manage.py"), *args]

    def run(self, *args, timeout=120):
        return subprocess.run(self.command(*args), env=self.env, cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)

    def start(self, *args, name=None):
        log_path = self.log_dir / f"{name or args[0]}-{uuid.uuid4().hex[:6]}.log"
        log = open(log_path, "w")
        child = subprocess.Popen(self.command(*args), env=self.env, cwd=ROOT, stdout=log,
                                 stderr=subprocess.STDOUT, text=True)
        log.close()
        child.log_path = log_path
        child.output = lambda: log_path.read_text()
        self.children.append(child)
        return child

    def stop_all(self):
        for child in self.children:
            if child.poll() is None:
                child.kill()
                child.wait()


class AuthDatabase:
    """Django's own tables (accounts, tokens, sessions) in a migrated SQLite file, for server processes.

    In-process tests use pytest-django's test database instead (the `db` fixture and `api_client`).
    """

    def __init__(self, path):
        self.url = f"sqlite:///{path}"
        self.manage("migrate", "--noinput")

    def manage(self, *args):
        result = ManagePy({"DATABASE_URL": self.url}).run(*args)
        assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result.stdout

    def token(self, username, *, all_users=False):
        """The account's key, from `manage.py api_token` as a script would read it."""
        output = self.manage("api_token", username, *(["--all-users"] if all_users else []))
        return output.split()[-1]

    def set_password(self, username, password):
        self.manage("shell", "-c", "from django.contrib.auth import get_user_model; "
                    f"user = get_user_model().objects.get(username={username!r}); "
                    f"user.set_password({password!r}); user.save()")


class PortTaken(Exception):
    """A free port found by `processes.free_port` was taken by another process before the server bound it."""


class ProductionApi:
    """The production serving command on free loopback ports (API, probes and metrics), one database and the
    accounts in `database_url` (an AuthDatabase's), DEBUG off."""

    START_ATTEMPTS = 3  # each on new ports: another process may take a free port before gunicorn binds it

    def __init__(self, mongodb_uri, log_dir, *, database_url, **environment):
        self.environment = {"MONGODB_URI": mongodb_uri, "DATABASE_URL": database_url, **environment}
        for attempt in range(1, self.START_ATTEMPTS + 1):
            self.log_path = log_dir / f"api-{uuid.uuid4().hex[:6]}.log"
            try:
                self._start()
                return
            except PortTaken:
                if attempt == self.START_ATTEMPTS:
                    raise

    def _start(self):
        self.port, self.metrics_port, self.probe_port = (processes.free_port(), processes.free_port(),
                                                         processes.free_port())
        self.url = f"http://{processes.HOST}:{self.port}"
        self.probe_url = f"http://{processes.HOST}:{self.probe_port}"
        self.metrics_url = f"http://{processes.HOST}:{self.metrics_port}/metrics"
        self.workers = int(self.environment.get("GUNICORN_WORKERS", "2"))
        env = {**os.environ, "DJANGO_DEBUG": "false", "PYTHONUNBUFFERED": "1",
               "GUNICORN_BIND": f"{processes.HOST}:{self.port}", "API_METRICS_PORT": str(self.metrics_port),
               "API_PROBE_PORT": str(self.probe_port), "GUNICORN_WORKERS": str(self.workers),
               "DJANGO_SECRET_KEY": f"test-{uuid.uuid4().hex}{uuid.uuid4().hex}", **self.environment}
        command = [str(Path(sys.executable).with_name(PRODUCTION_API_COMMAND[0])), *PRODUCTION_API_COMMAND[1:]]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.answers, timeout=30, message=f"the API on {self.url} (log: {self.log_path})")

    def answers(self):
        if self.process.poll() is not None:
            output = self.log_path.read_text()
            if "Address already in use" in output or "Connection in use" in output:
                raise PortTaken(output[-2000:])
            raise AssertionError(f"the API exited: {output[-2000:]}")
        try:
            return processes.port_open(self.port) and http_json(f"{self.url}/healthz")[0] == 200
        except OSError:  # another process on a port it took first; this one's exit is seen at the next turn
            return False

    def get(self, path, **kwargs):
        return http_json(f"{self.url}{path}", **kwargs)

    def stop(self):
        processes.terminate(self.process, timeout=30)
