"""Fixtures: real broker and database processes on free loopback ports, one pair per test session.

Each test gets its own topic names, consumer group and database, so tests never see each
other's data while sharing the two servers (starting Tansu and SecantusDB takes about a second).
Every test that touches the broker runs twice: on Tansu (what `make run` uses by default) and on
Apache Kafka (what the service runs in production). TEST_BROKERS=tansu (or kafka) runs one leg only,
for a quick local run; CI refuses a run in which the Apache Kafka leg did not run.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import mongoengine
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymongo import MongoClient

from stack import processes

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "artifacts" / "test-logs"
# Tansu makes a joining member wait about half the session timeout; keep joins short in tests.
# Also Apache Kafka's smallest allowed value (group.min.session.timeout.ms).
TEST_SESSION_TIMEOUT_MS = 6000


def brokers_under_test():
    chosen = [name.strip() for name in os.environ.get("TEST_BROKERS", ",".join(processes.BROKERS)).split(",")
              if name.strip()]
    unknown = set(chosen) - set(processes.BROKERS)
    if unknown or not chosen:
        raise pytest.UsageError(f"TEST_BROKERS={os.environ['TEST_BROKERS']!r}: name one or more of "
                                f"{', '.join(processes.BROKERS)}")
    return chosen


_on_apache_kafka = set()
_ran_on_apache_kafka = []


def pytest_collection_modifyitems(items):
    _on_apache_kafka.update(item.nodeid for item in items
                            if getattr(item, "callspec", None) and item.callspec.params.get("kafka_broker") == "kafka")


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed and report.nodeid in _on_apache_kafka:
        _ran_on_apache_kafka.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """In CI a run without the Apache Kafka leg fails, whatever else passed (issue #7)."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and exitstatus == 0 and not _ran_on_apache_kafka:
        writer = session.config.get_terminal_writer()
        writer.line()
        writer.line("CI: no test passed on Apache Kafka (the `kafka` leg of kafka_broker); failing the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def wait_for(condition, *, timeout, interval=0.1, message="condition"):
    """Poll `condition` until it returns a truthy value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def http_response(url, *, headers=None, timeout=10):
    """(status, response headers, body bytes) for a GET; HTTP error statuses are answers, not exceptions."""
    request = urllib.request.Request(url, headers={"Host": "localhost", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def http_get(url, *, headers=None):
    """(status, body) for a GET; HTTP error statuses are answers here, not exceptions."""
    status, _, body = http_response(url, headers=headers)
    return status, body.decode()


def http_json(url, *, headers=None, timeout=10):
    """(status, parsed JSON or text, response headers) for a GET; HTTP error statuses are answers."""
    status, response_headers, body = http_response(url, headers=headers, timeout=timeout)
    kind = response_headers.get("Content-Type", "")
    return status, json.loads(body) if "json" in kind else body.decode(), response_headers


def scrape(url):
    """{(sample name, frozenset of labels): value} from one Prometheus text exposition."""
    status, body = http_get(url)
    assert status == 200, f"{url} answered {status}"
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body) for sample in family.samples}


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


class UndecodableHeaderName(str):
    """A record header name whose bytes are not UTF-8. The protocol allows any bytes there and other
    clients write them; kafka-python takes only `str` names, so this one hands its record builder raw bytes."""

    def encode(self, *args, **kwargs):
        return b"\xff\xfetrace"


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


class AcknowledgedAtOnce:
    """For stand-ins of KafkaProducer in unit tests of the publishing loop: every send is its own
    future, acknowledged at once (kafka-python calls the callback with the record's metadata)."""

    flushed = False

    def add_callback(self, callback):
        callback(None)
        return self

    def add_errback(self, callback, *args):
        return self

    def flush(self, timeout=None):
        self.flushed = True


@pytest.fixture(scope="session")
def log_dir():
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return LOG_DIR


@pytest.fixture(scope="session", params=brokers_under_test())
def kafka_broker(request, log_dir, tmp_path_factory):
    """The session's broker, once per kind; `.kind` is `tansu` or `kafka`."""
    kind = request.param
    server = processes.broker(processes.free_port(), log_dir / f"broker-{kind}.log", kind=kind,
                              data_dir=tmp_path_factory.mktemp(f"broker-{kind}"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def broker_kind(kafka_broker):
    return kafka_broker.kind


@pytest.fixture(scope="session")
def mongodb_server(log_dir, tmp_path_factory):
    # A storage folder (not :memory:) so tests can stop and restart the server and keep the data.
    storage = tmp_path_factory.mktemp("mongodb")
    server = processes.database(processes.free_port(), storage, log_dir / "mongodb.log").start()
    yield server
    server.stop()


class AuthDatabase:
    """Django's own tables (accounts, tokens, sessions) in a migrated SQLite file, for server processes.

    In-process tests use pytest-django's test database instead (the `db` fixture and `api_client`).
    """

    def __init__(self, path):
        self.url = f"sqlite:///{path}"
        self.manage("migrate", "--noinput")

    def manage(self, *args):
        result = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, capture_output=True,
                                text=True, timeout=120, env={**os.environ, "DATABASE_URL": self.url})
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


@pytest.fixture(scope="session")
def auth_database(tmp_path_factory):
    return AuthDatabase(tmp_path_factory.mktemp("django") / "django.sqlite3")


@pytest.fixture(scope="session")
def live_auth_header(auth_database):
    """Headers for a request to a server process on `auth_database`, as an all-users account."""
    return {"Authorization": f"Token {auth_database.token('support', all_users=True)}"}


@pytest.fixture
def api_client(db):
    """Django's test client as an all-users account of the test database (in-process tests)."""
    from django.test import Client

    from logs.api.accounts import issue_api_token

    return Client(headers={"Authorization": f"Token {issue_api_token(username='support', all_users=True).key}"})


@pytest.fixture(autouse=True)
def empty_cache():
    """Throttle counts and checked tokens live in the cache; each test starts with neither (account ids
    are reused once a test's database transaction is rolled back)."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def bootstrap_servers(kafka_broker):
    return f"{processes.HOST}:{kafka_broker.port}"


@pytest.fixture
def mongodb_uri(mongodb_server):
    name = f"test_{uuid.uuid4().hex[:12]}"
    uri = f"mongodb://{processes.HOST}:{mongodb_server.port}/{name}"
    yield uri
    with MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(name)


@pytest.fixture
def pipeline_env(bootstrap_servers, mongodb_uri, auth_database):
    """Environment variables for one isolated pipeline: its own topics, group and database."""
    suffix = uuid.uuid4().hex[:10]
    return {
        "DATABASE_URL": auth_database.url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "KAFKA_TOPIC": f"activity-{suffix}",
        "KAFKA_DLQ_TOPIC": f"activity-{suffix}.dlq",
        "KAFKA_CONSUMER_GROUP": f"group-{suffix}",
        "KAFKA_TOPIC_PARTITIONS": "3",
        "KAFKA_SESSION_TIMEOUT_MS": str(TEST_SESSION_TIMEOUT_MS),
        "MONGODB_URI": mongodb_uri,
        "MONGODB_SERVER_SELECTION_TIMEOUT_MS": "2000",
    }


@pytest.fixture
def pipeline_settings(pipeline_env, settings):
    """The same isolated pipeline, applied to this process's Django settings and connection."""
    from logs.storage.connection import connect_database

    for name, value in pipeline_env.items():
        setattr(settings, name, int(value) if value.isdigit() else value)
    connect_database()
    yield settings
    mongoengine.disconnect()


@pytest.fixture
def pipeline_topics(pipeline_settings):
    """The pipeline's topic and dead-letter topic, created as the commands create them.

    A test that writes to the topic itself needs this: Apache Kafka, as docker-compose runs it, does
    not create a topic on first use (auto.create.topics.enable=false).
    """
    from logs.pipeline.broker import ensure_topics

    ensure_topics(pipeline_settings.KAFKA_TOPIC, pipeline_settings.KAFKA_DLQ_TOPIC)
    return pipeline_settings.KAFKA_TOPIC, pipeline_settings.KAFKA_DLQ_TOPIC


@pytest.fixture
def activity_collection(pipeline_settings):
    from logs.storage.documents import ActivityLog

    return ActivityLog._get_collection()


class ManagePy:
    """Runs `python manage.py ...` as a real child process with the test pipeline's environment."""

    def __init__(self, env, log_dir):
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


@pytest.fixture
def manage(pipeline_env, log_dir):
    runner = ManagePy(pipeline_env, log_dir)
    yield runner
    runner.stop_all()


# The API exactly as the image, docker-compose and Kubernetes start it (Dockerfile CMD).
PRODUCTION_API_COMMAND = ["gunicorn", "--config", "gunicorn.conf.py", "activity_service.asgi:application"]


class ProductionApi:
    """The production serving command on free loopback ports (API and metrics), one database and the
    accounts in `database_url` (an AuthDatabase's), DEBUG off."""

    def __init__(self, mongodb_uri, log_dir, *, database_url, **environment):
        self.port, self.metrics_port, self.probe_port = processes.free_port(), processes.free_port(), processes.free_port()
        self.url = f"http://{processes.HOST}:{self.port}"
        self.probe_url = f"http://{processes.HOST}:{self.probe_port}"
        self.metrics_url = f"http://{processes.HOST}:{self.metrics_port}/metrics"
        self.log_path = log_dir / f"api-{uuid.uuid4().hex[:6]}.log"
        env = {**os.environ, "MONGODB_URI": mongodb_uri, "DJANGO_DEBUG": "false", "PYTHONUNBUFFERED": "1",
               "GUNICORN_BIND": f"{processes.HOST}:{self.port}", "API_METRICS_PORT": str(self.metrics_port),
               "API_PROBE_PORT": str(self.probe_port),
               "GUNICORN_WORKERS": "2", "DJANGO_SECRET_KEY": f"test-{uuid.uuid4().hex}{uuid.uuid4().hex}",
               "DATABASE_URL": database_url, **environment}
        command = [str(Path(sys.executable).with_name(PRODUCTION_API_COMMAND[0])), *PRODUCTION_API_COMMAND[1:]]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.answers, timeout=30, message=f"the API on {self.url} (log: {self.log_path})")

    def answers(self):
        if self.process.poll() is not None:
            raise AssertionError(f"the API exited: {self.log_path.read_text()[-2000:]}")
        return processes.port_open(self.port) and http_json(f"{self.url}/healthz")[0] == 200

    def get(self, path, **kwargs):
        return http_json(f"{self.url}{path}", **kwargs)

    def stop(self):
        processes.terminate(self.process, timeout=30)


@pytest.fixture
def production_api(mongodb_uri, log_dir, auth_database, tmp_path):
    """The production serving command (ProductionApi) on this test's database and the session's accounts,
    its workers' metrics kept in a folder of the test's own."""
    server = ProductionApi(mongodb_uri, log_dir, database_url=auth_database.url,
                           PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "api-metrics"))
    yield server
    server.stop()
