"""Fixtures and the broker rule. Helpers that are not fixtures live in tests/support/ (see its docstring).

Where things go: a fixture more than one test module uses goes here; a helper that is not a fixture goes
in the tests/support/ module of its concern; anything used by one test module stays in that module. No
test module imports another test module or this file.

Servers: real broker and database processes on free loopback ports, one of each kind per test session.
Each test gets its own topic names, consumer group and database, so tests never see each other's data
while sharing the servers. The brokers a run needs start in the background when the session's first test
starts, both at once; a test waits only for the one it uses.

Processes: `make test` runs the suite in TEST_WORKERS (4) pytest-xdist workers, each a session with servers
of its own (a test may stop or freeze the database it shares only with its own worker's tests). Test ids
must be the same in every worker (no random parameters). Modules whose module fixtures are costly say
`pytest.mark.xdist_group(name)` so that one worker runs them all; a plain `pytest` runs in one process.

Brokers: TEST_BROKERS (default `tansu,kafka`) names the brokers under test. A test takes a broker through
the `kafka_broker` fixture (the session's broker, directly or through `bootstrap_servers`, `pipeline_env`,
`pipeline_settings`, `manage`, ...) or `make_run` (`make run` with LOCAL_BROKER set), and runs:

- on both brokers where the broker's own behaviour is what the test is about: marked
  `@pytest.mark.brokers("tansu", "kafka")`. Transactions and commits, restarts and a broker coming up,
  record batches and codecs, consumer groups and rebalances, security, topic creation, oversize records.
- on one broker everywhere else, because the broker only carries the events there. For `kafka_broker`
  that is Apache Kafka: what production runs, and the faster of the two per test (a joining member
  waits about half the session timeout on Tansu, none on Kafka with group.initial.rebalance.delay.ms=0);
  Tansu's leg is the tests marked for both. For `make_run` it is Tansu, which `make run` runs unless
  told otherwise. Where that broker is not under test, the one that is.
- only on Apache Kafka where Tansu cannot show it (a broker that keeps its data on disk, ACLs):
  `@pytest.mark.brokers("kafka")`, on tests that take `kafka_broker` or start an Apache Kafka of their own.

A leg whose broker is not under test is deselected (counted as "deselected" in pytest's summary), never
skipped and never passed: TEST_BROKERS=tansu is a quick run without the JVM, TEST_BROKERS=kafka one
without Tansu, and each names in its header what it leaves out. With CI=true a run in which no test
passed on Apache Kafka fails, whatever else passed (issue #7).
"""

import os
import uuid

import pytest
from pymongo import MongoClient

from stack import processes
from tests.support import ROOT
from tests.support.brokers import StartedInBackground, brokers_under_test, one_leg
from tests.support.databases import own_database
from tests.support.servers import AuthDatabase, ManagePy, ProductionApi

LOG_DIR = ROOT / "artifacts" / "test-logs"
# Tansu makes a joining member wait about half the session timeout; keep joins short in tests.
# Also Apache Kafka's smallest allowed value (group.min.session.timeout.ms).
TEST_SESSION_TIMEOUT_MS = 6000
# The fixtures through which a test runs on a broker, and the broker it runs on when it does not matter.
ONE_LEG = {"kafka_broker": "kafka", "make_run": "tansu"}


# --- which test runs on which broker ---------------------------------------------------------------------

def pytest_report_header(config):
    under_test = brokers_under_test()
    legs = ", ".join(f"{fixture} on {one_leg(kind, under_test)}" for fixture, kind in ONE_LEG.items())
    left_out = sorted(set(processes.BROKERS) - set(under_test))
    return (f"brokers under test: {', '.join(under_test)}; one-leg tests: {legs}"
            + (f"; legs on {', '.join(left_out)} deselected" if left_out else ""))


def marked_brokers(node):
    marker = node.get_closest_marker("brokers")
    if marker is None:
        return None
    if not marker.args or set(marker.args) - set(processes.BROKERS):
        raise pytest.UsageError(f"{node.nodeid}: @pytest.mark.brokers takes one or more of "
                                f"{', '.join(processes.BROKERS)}, not {marker.args}")
    return list(marker.args)


def pytest_generate_tests(metafunc):
    for fixture, preferred in ONE_LEG.items():
        if fixture in metafunc.fixturenames:
            legs = marked_brokers(metafunc.definition) or [one_leg(preferred, brokers_under_test())]
            metafunc.parametrize(fixture, legs, indirect=True)


def brokers_of(item):
    """The brokers `item` runs on: its leg, or those its `brokers` mark names (it starts its own)."""
    params = getattr(item, "callspec", None) and item.callspec.params or {}
    legs = [params[fixture] for fixture in ONE_LEG if fixture in params]
    return legs or marked_brokers(item) or []


def pytest_collection_modifyitems(config, items):
    under_test = set(brokers_under_test())
    kept, deselected = [], []
    for item in items:
        brokers = brokers_of(item)
        (kept if set(brokers) <= under_test else deselected).append(item)
        # Travels with the test's report, also from a pytest-xdist worker to the controller.
        item.user_properties.append(("brokers", ",".join(brokers)))
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


# Filled where every report arrives: the controller of a pytest-xdist run, or the only process.
_ran_on_a_broker = []
_passed_on_apache_kafka = []


def pytest_runtest_logreport(report):
    brokers = dict(report.user_properties).get("brokers", "")
    if report.when == "call" and brokers:
        _ran_on_a_broker.append(report.nodeid)
        if report.passed and "kafka" in brokers.split(","):
            _passed_on_apache_kafka.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """In CI a run of broker tests in which none passed on Apache Kafka fails, whatever else passed (issue #7).
    A run without broker tests (`make lint`'s scanners, one module of unit tests) is not judged.

    Judged by the controller of a pytest-xdist run (a worker sees only its share), or the only process."""
    if hasattr(session.config, "workerinput"):
        return
    if (os.environ.get("CI", "").lower() in ("1", "true", "yes") and exitstatus == 0
            and _ran_on_a_broker and not _passed_on_apache_kafka):
        writer = session.config.get_terminal_writer()
        writer.line()
        writer.line("CI: no test passed on Apache Kafka (a `kafka` leg, or a test of its own Apache Kafka); "
                    "failing the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- servers ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def log_dir():
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return LOG_DIR


@pytest.fixture(scope="session")
def worker_name(request):
    """`gw0`, `gw1`, ... under pytest-xdist, `main` otherwise: in the names of the session's log files."""
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


@pytest.fixture(scope="session", autouse=True)
def session_brokers(request, log_dir, worker_name, tmp_path_factory):
    """The session's brokers, every kind its tests run on, started together in the background at once."""
    needed = sorted({params["kafka_broker"] for item in request.session.items
                     if (params := getattr(item, "callspec", None) and item.callspec.params or {}).get("kafka_broker")})
    starting = {kind: StartedInBackground(processes.broker(
        processes.free_port(), log_dir / f"broker-{kind}-{worker_name}.log", kind=kind,
        data_dir=tmp_path_factory.mktemp(f"broker-{kind}"))) for kind in needed}
    yield starting
    for server in starting.values():
        server.stop()


@pytest.fixture(scope="session")
def kafka_broker(request, session_brokers):
    """The session's broker of the test's leg; `.kind` is `tansu` or `kafka`."""
    return session_brokers[request.param].ready()


@pytest.fixture
def broker_kind(kafka_broker):
    return kafka_broker.kind


@pytest.fixture(scope="session")
def mongodb_server(log_dir, worker_name, tmp_path_factory):
    # A storage folder (not :memory:) so tests can stop and restart the server and keep the data.
    storage = tmp_path_factory.mktemp("mongodb")
    server = processes.database(processes.free_port(), storage, log_dir / f"mongodb-{worker_name}.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def auth_database(tmp_path_factory):
    return AuthDatabase(tmp_path_factory.mktemp("django") / "django.sqlite3")


@pytest.fixture(scope="session")
def live_auth_header(auth_database):
    """Headers for a request to a server process on `auth_database`, as an all-users account."""
    return {"Authorization": f"Token {auth_database.token('support', all_users=True)}"}


@pytest.fixture(scope="session")
def live_api(mongodb_server, log_dir, auth_database):
    """The API as the image runs it, over 45 stored logs (user-1 and user-2, every action, one a minute)."""
    from datetime import timedelta

    from logs.events import ACTIONS
    from tests.support.builders import START, activity_event, store

    with own_database(mongodb_server, "test_live") as uri:
        with MongoClient(uri, tz_aware=True) as client:
            events = [activity_event(user_id=f"user-{minute % 2 + 1}", action=ACTIONS[minute % 3],
                                     at=START + timedelta(minutes=minute)) for minute in range(45)]
            store(client.get_default_database()["activity_logs"], events)
        server = ProductionApi(uri, log_dir, database_url=auth_database.url,
                               MONGODB_SERVER_SELECTION_TIMEOUT_MS="1000")
        yield server
        server.stop()


# --- Django, in this process ---------------------------------------------------------------------------

@pytest.fixture
def api_client(db):
    """Django's test client as an all-users account of the test database (in-process tests)."""
    from django.test import Client

    from logs.api.accounts import issue_api_token

    return Client(headers={"Authorization": f"Token {issue_api_token(username='support', all_users=True).key}"})


@pytest.fixture(autouse=True)
def empty_cache():
    """Throttle and lockout counts and checked tokens live in the process (or the cache); each test starts with
    none (account ids are reused once a test's database transaction is rolled back)."""
    from django.core.cache import cache

    from logs.api.authentication import checked_tokens
    from logs.api.local_cache import local_counts

    cache.clear()
    local_counts.clear()
    checked_tokens.clear()


# --- one test's own database, topics and group -----------------------------------------------------------

@pytest.fixture
def bootstrap_servers(kafka_broker):
    return f"{processes.HOST}:{kafka_broker.port}"


@pytest.fixture
def mongodb_uri(mongodb_server):
    with own_database(mongodb_server) as uri:
        yield uri


@pytest.fixture
def database_settings(mongodb_uri, settings):
    """This test's own database, applied to this process's Django settings and connection (no broker)."""
    from logs.storage.connection import connect_database

    connection_settings = ("MONGODB_URI", "MONGODB_SERVER_SELECTION_TIMEOUT_MS")
    before = {name: getattr(settings, name) for name in connection_settings}
    settings.MONGODB_URI = mongodb_uri
    connect_database()
    yield settings
    # Back to the connection the app registered at its start (LogsConfig.ready), which the next test may use.
    for name, value in before.items():
        setattr(settings, name, value)
    connect_database()


@pytest.fixture
def activity_collection(database_settings):
    from logs.storage.documents import ActivityLog

    return ActivityLog._get_collection()


@pytest.fixture
def api_collection(database_settings):
    """The API's connection pointed at this test's own database, with the document's indexes."""
    from logs.storage.documents import ActivityLog

    ActivityLog.ensure_indexes()
    return ActivityLog._get_collection()


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
def pipeline_settings(pipeline_env, database_settings):
    """The same isolated pipeline, applied to this process's Django settings and connection."""
    from logs.storage.connection import connect_database

    for name, value in pipeline_env.items():
        setattr(database_settings, name, int(value) if value.isdigit() else value)
    connect_database()  # again, with the pipeline's server selection timeout
    return database_settings


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
def manage(pipeline_env, log_dir):
    """`manage.py` commands as child processes with the test's pipeline environment; killed at the end."""
    runner = ManagePy(pipeline_env, log_dir)
    yield runner
    runner.stop_all()


@pytest.fixture
def production_api(mongodb_uri, log_dir, auth_database, tmp_path):
    """The production serving command (ProductionApi) on this test's database and the session's accounts,
    its workers' metrics kept in a folder of the test's own."""
    server = ProductionApi(mongodb_uri, log_dir, database_url=auth_database.url,
                           PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "api-metrics"))
    yield server
    server.stop()
