"""The commands against an Apache Kafka that authenticates (SASL_PLAINTEXT/PLAIN) and authorizes (ACLs).

One secured node for the module, on its own ports and data folder, with two users whose passwords are
drawn at random here: `admin` (a super user: creates topics and ACLs, reads what the commands wrote) and
`app` (what the commands log in as; each test grants it ACLs on its own topics and group only). Every
configuration error stops the real command with one line naming the cause and what to do, and commits
nothing (docs/contract.md, "Delivery and storage guarantees").
"""

import secrets
import time
import uuid
from types import SimpleNamespace

import pytest
from conftest import UndecodableHeaderName, brokers_under_test, wait_for
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    NewTopic,
    ResourcePattern,
    ResourceType,
    UserScramCredentialUpsertion,
)
from kafka.errors import KafkaError

from logs.events import ActivityEvent
from logs.pipeline.failures import Rejected
from logs.pipeline.ingestion import dead_letter_record
from stack import processes
from stack.topics import read_topic

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif("kafka" not in brokers_under_test(), reason="TEST_BROKERS leaves Apache Kafka out"),
]

CONSUME = ("consume_activity", "--idle-timeout", "3", "--metrics-port", "0")
# A refusal is known within kafka-python's bootstrap timeout (10 s) plus the command's start.
REFUSAL_DEADLINE_SECONDS = 45


@pytest.fixture(scope="module")
def secured_kafka(log_dir, tmp_path_factory):
    users = {"admin": secrets.token_urlsafe(18), "app": secrets.token_urlsafe(18)}
    server = processes.apache_kafka_broker(processes.free_port(), tmp_path_factory.mktemp("secured-kafka"),
                                           log_dir / "secured-kafka.log", sasl_users=users, super_user="admin")
    server.start()
    server.users = users
    yield server
    server.stop()


@pytest.fixture
def bootstrap_servers(secured_kafka):
    """Overrides conftest's: this module's pipeline runs on the secured Apache Kafka only."""
    return f"{processes.HOST}:{secured_kafka.port}"


@pytest.fixture
def admin_config(secured_kafka):
    return processes.sasl_client_config("admin", secured_kafka.users["admin"])


@pytest.fixture
def admin(bootstrap_servers, admin_config):
    client = KafkaAdminClient(bootstrap_servers=bootstrap_servers, **admin_config)
    yield client
    client.close()


@pytest.fixture
def secured(manage, secured_kafka):
    """The commands log in as `app` (one test hands the password over as a file, as Kubernetes does)."""
    manage.env.update(KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", KAFKA_SASL_MECHANISM="PLAIN",
                      KAFKA_SASL_USERNAME="app", KAFKA_SASL_PASSWORD=secured_kafka.users["app"])
    return manage


@pytest.fixture
def topics(admin, pipeline_env):
    """The pipeline's topic and dead-letter topic, created by the administrator."""
    topic, dlq_topic = pipeline_env["KAFKA_TOPIC"], pipeline_env["KAFKA_DLQ_TOPIC"]
    admin.create_topics([NewTopic(topic, 2, 1), NewTopic(dlq_topic, 1, 1)])
    return topic, dlq_topic


def allow(admin, *grants, user="app"):
    """ACLs allowing `user` each (ResourceType, name, ACLOperation[, ACLResourcePatternType]) of `grants`."""
    admin.create_acls([ACL(f"User:{user}", "*", operation, ACLPermissionType.ALLOW,
                           ResourcePattern(kind, name, *pattern)) for kind, name, operation, *pattern in grants])


def grants_to_consume(env, *, read_topic=True, read_group=True, write_dlq=True):
    topic, dlq_topic, group = env["KAFKA_TOPIC"], env["KAFKA_DLQ_TOPIC"], env["KAFKA_CONSUMER_GROUP"]
    return [(ResourceType.TOPIC, topic, ACLOperation.DESCRIBE), (ResourceType.TOPIC, dlq_topic, ACLOperation.DESCRIBE),
            *([(ResourceType.TOPIC, topic, ACLOperation.READ)] if read_topic else []),
            *([(ResourceType.GROUP, group, ACLOperation.READ)] if read_group else []),
            *([(ResourceType.TOPIC, dlq_topic, ACLOperation.WRITE)] if write_dlq else [])]


def valid_event(user="user-1"):
    return ActivityEvent.from_dict({"eventId": str(uuid.uuid4()), "userId": user, "action": "balance_inquiry",
                                    "balance": "10.00", "timestamp": "2026-11-25T12:00:00Z"})


def publish(bootstrap_servers, admin_config, topic, values):
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", **admin_config)
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in values]
        producer.flush(timeout=30)
        assert all(future.succeeded() for future in futures)
    finally:
        producer.close()


def committed(admin, group):
    """The group's committed offsets ({} when it committed nothing), read by the administrator; on a fresh
    node the offsets topic, created on first use, has no coordinator for a moment."""
    def offsets():
        try:
            return [admin.list_group_offsets(group)[group]]
        except KafkaError as exc:  # CoordinatorNotAvailable, NotCoordinator while the offsets topic loads
            if not exc.retriable:
                raise
            return None
    return wait_for(offsets, timeout=30, interval=0.5, message=f"group {group}'s coordinator")[0]


def refused(manage, *args):
    """Run a command that must stop on a configuration error; (its one error line, seconds it took)."""
    started = time.monotonic()
    result = manage.run(*args, timeout=REFUSAL_DEADLINE_SECONDS + 30)
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith(("CommandError", "Broker"))]
    assert len(errors) == 1, output
    assert seconds < REFUSAL_DEADLINE_SECONDS, output
    return errors[0]


def test_a_wrong_password_stops_the_consumer_with_one_line_and_commits_nothing(
        secured, admin, admin_config, bootstrap_servers, pipeline_env, topics):
    allow(admin, *grants_to_consume(pipeline_env))
    publish(bootstrap_servers, admin_config, topics[0], [(b"user-1", valid_event().to_bytes())] * 3)
    secured.env["KAFKA_SASL_PASSWORD"] = "not-" + secured.env["KAFKA_SASL_PASSWORD"]

    line = refused(secured, *CONSUME)

    assert "refused the login of user app" in line and "KAFKA_SASL_PASSWORD" in line
    assert committed(admin, pipeline_env["KAFKA_CONSUMER_GROUP"]) == {}


def test_a_wrong_password_stops_the_producer_with_one_line_and_sends_nothing(
        secured, admin, admin_config, bootstrap_servers, pipeline_env, topics, tmp_path):
    allow(admin, (ResourceType.TOPIC, topics[0], ACLOperation.DESCRIBE),
          (ResourceType.TOPIC, topics[0], ACLOperation.WRITE), (ResourceType.TOPIC, topics[1], ACLOperation.DESCRIBE))
    password_file = tmp_path / "kafka-password"
    password_file.write_text("wrong\n")
    del secured.env["KAFKA_SASL_PASSWORD"]
    secured.env["KAFKA_SASL_PASSWORD_FILE"] = str(password_file)

    line = refused(secured, *PRODUCE)

    assert "refused the login of user app" in line and "KAFKA_SASL_PASSWORD" in line
    assert read_topic(bootstrap_servers, topics[0], **admin_config) == []


@pytest.mark.parametrize("missing_grant, error, advice", [
    ("read_topic", "TopicAuthorizationFailedError", "Read on topic {KAFKA_TOPIC}"),
    ("read_group", "GroupAuthorizationFailedError", "Read on group {KAFKA_CONSUMER_GROUP}"),
], ids=["topic", "group"])
def test_a_consumer_not_allowed_to_read_stops_with_one_line_naming_the_acl_and_commits_nothing(
        secured, admin, admin_config, bootstrap_servers, pipeline_env, topics, missing_grant, error, advice):
    allow(admin, *grants_to_consume(pipeline_env, **{missing_grant: False}))
    publish(bootstrap_servers, admin_config, topics[0], [(b"user-1", valid_event().to_bytes())] * 3)

    line = refused(secured, *CONSUME)

    assert error in line and advice.format(**pipeline_env) in line
    assert committed(admin, pipeline_env["KAFKA_CONSUMER_GROUP"]) == {}


PRODUCE = ("produce_activity", "--rate", "100", "--count", "5")


@pytest.mark.parametrize("command", [CONSUME, PRODUCE], ids=["consumer", "producer"])
def test_a_missing_topic_the_user_may_not_create_stops_the_command_with_one_line(
        secured, admin, pipeline_env, command):
    """Topics are created by the commands (ensure_topics); on a broker that refuses this user the creation
    and does not create topics on first use either (auto.create.topics.enable=false), that is the end."""
    allow(admin, *grants_to_consume(pipeline_env),  # every right on the names, none to create them
          (ResourceType.TOPIC, pipeline_env["KAFKA_TOPIC"], ACLOperation.WRITE))

    line = refused(secured, *command)

    assert "does not exist or Kafka user app may not see it" in line and "kafka-topics --create" in line
    assert pipeline_env["KAFKA_TOPIC"] not in admin.list_topics()
    assert committed(admin, pipeline_env["KAFKA_CONSUMER_GROUP"]) == {}


def test_a_dead_letter_topic_the_consumer_may_not_write_stops_it_with_one_line_and_commits_nothing(
        secured, admin, admin_config, bootstrap_servers, pipeline_env, topics):
    allow(admin, *grants_to_consume(pipeline_env, write_dlq=False))
    publish(bootstrap_servers, admin_config, topics[0],
            [(b"user-1", valid_event().to_bytes()), (b"bad", b"{not json"), (b"user-2", valid_event().to_bytes())])

    line = refused(secured, *CONSUME)

    assert "TopicAuthorizationFailedError" in line and f"Write on topic {topics[1]}" in line
    assert committed(admin, pipeline_env["KAFKA_CONSUMER_GROUP"]) == {}
    assert read_topic(bootstrap_servers, topics[1], **admin_config) == []


def test_with_the_right_credentials_events_are_stored_and_bad_ones_dead_lettered(
        secured, admin, admin_config, bootstrap_servers, pipeline_env, topics, activity_collection):
    """Also a record kafka-python cannot decode (a header name that is not UTF-8): the reader that fetches
    its batch as bytes logs in like every other client."""
    allow(admin, *grants_to_consume(pipeline_env))
    events = [valid_event(f"user-{number}") for number in range(10)]
    publish(bootstrap_servers, admin_config, topics[0],
            [(event.key, event.to_bytes()) for event in events] + [(b"bad", b"{not json")])
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", **admin_config)
    try:
        producer.send(topics[0], partition=0, key=b"hostile", value=b"{}", headers=[(UndecodableHeaderName("x"), b"v")])
        producer.flush(timeout=30)
    finally:
        producer.close()

    result = secured.run(*CONSUME, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    assert {document["_id"] for document in activity_collection.find()} == {event.event_id for event in events}
    dead = {record.key: record for record in read_topic(bootstrap_servers, topics[1], **admin_config)}
    assert set(dead) == {b"bad", b"hostile"}
    assert dead[b"bad"].value == b"{not json" and b"not JSON" in dict(dead[b"bad"].headers)["dlq.reason"]
    assert dict(dead[b"hostile"].headers)["dlq.reason"].startswith(b"header name not UTF-8")
    offsets = committed(admin, pipeline_env["KAFKA_CONSUMER_GROUP"])
    assert sum(meta.offset for meta in offsets.values()) == len(events) + 2


@pytest.mark.parametrize("count", [["--count", "5"], []], ids=["count", "until-stopped"])
def test_a_producer_not_allowed_to_write_the_topic_stops_with_one_line_and_sends_nothing(
        secured, admin, admin_config, bootstrap_servers, pipeline_env, topics, count):
    allow(admin, (ResourceType.TOPIC, topics[0], ACLOperation.DESCRIBE),
          (ResourceType.TOPIC, topics[1], ACLOperation.DESCRIBE))

    line = refused(secured, "produce_activity", "--rate", "100", *count)

    # kafka-python 3.0.12 reports the refused InitProducerId of its idempotent producer (no Write on any
    # topic) as a plain KafkaError naming ClusterAuthorizationFailedError.
    assert "AuthorizationFailedError" in line and f"grant it Describe and Write on topic {topics[0]}" in line
    assert "stopped with 0 events acknowledged" in line
    assert read_topic(bootstrap_servers, topics[0], **admin_config) == []


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_scram_user_consumes_with_its_mechanism_and_is_refused_with_another(
        secured, admin, admin_config, bootstrap_servers, pipeline_env, topics, activity_collection, mechanism):
    """KAFKA_SASL_MECHANISM reaches the clients: a SCRAM user (added by the administrator with a password
    drawn here) logs in with its mechanism, and the same password under PLAIN is a refused login."""
    user, password = f"scram-{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    admin.alter_user_scram_credentials([UserScramCredentialUpsertion(user, mechanism, password)])
    allow(admin, *grants_to_consume(pipeline_env), user=user)
    events = [valid_event(f"user-{number}") for number in range(5)]
    publish(bootstrap_servers, admin_config, topics[0], [(event.key, event.to_bytes()) for event in events])
    secured.env.update(KAFKA_SASL_MECHANISM=mechanism, KAFKA_SASL_USERNAME=user, KAFKA_SASL_PASSWORD=password)

    def logged_in():  # the credential reaches the broker's SCRAM cache shortly after the administrator's call
        result = secured.run(*CONSUME, timeout=120)
        return result if result.returncode == 0 or "refused the login" not in result.stderr else None

    result = wait_for(logged_in, timeout=60, interval=1, message=f"{user} logged in with {mechanism}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {document["_id"] for document in activity_collection.find()} == {event.event_id for event in events}

    secured.env["KAFKA_SASL_MECHANISM"] = "PLAIN"
    assert f"refused the login of user {user}" in refused(secured, *CONSUME)


REDRIVE = ("redrive_dead_letters", "--progress-every", "60")


def grants_to_redrive(env, *, write_topic=True, read_group=True):
    """What docs/operations.md "Secured Kafka" asks for: the groups by prefix, so that `--reason` runs are covered."""
    topic, dlq_topic, group = env["KAFKA_TOPIC"], env["KAFKA_DLQ_TOPIC"], f"{env['KAFKA_CONSUMER_GROUP']}.redrive"
    return [(ResourceType.TOPIC, topic, ACLOperation.DESCRIBE), (ResourceType.TOPIC, dlq_topic, ACLOperation.DESCRIBE),
            (ResourceType.TOPIC, dlq_topic, ACLOperation.READ),
            *([(ResourceType.TOPIC, topic, ACLOperation.WRITE)] if write_topic else []),
            *([(ResourceType.GROUP, group, ACLOperation.READ, ACLResourcePatternType.PREFIXED)] if read_group else [])]


def publish_dead_letters(bootstrap_servers, admin_config, topic, dlq_topic, events):
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", **admin_config)
    try:
        for index, event in enumerate(events):
            key, value, headers = dead_letter_record(
                Rejected(SimpleNamespace(topic=topic, partition=0, offset=index, key=event.key, value=event.to_bytes(),
                                         headers=[]), "refused by MongoDB: code 121"), group="group", max_bytes=900_000)
            producer.send(dlq_topic, key=key, value=value, headers=headers)
        producer.flush(timeout=30)
    finally:
        producer.close()


def test_redrive_with_its_grants_puts_dead_letters_back_under_a_prefixed_group_acl(
        secured, admin, admin_config, bootstrap_servers, pipeline_env, topics):
    allow(admin, *grants_to_redrive(pipeline_env))
    events = [valid_event(f"user-{number}") for number in range(4)]
    publish_dead_letters(bootstrap_servers, admin_config, *topics, events)

    for arguments in (("--reason", "code 121"), ()):  # a --reason run's own group is covered by the prefix
        result = secured.run(*REDRIVE, *arguments, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr

    sent = read_topic(bootstrap_servers, topics[0], **admin_config)
    assert sorted(ActivityEvent.from_bytes(record.value).event_id for record in sent) == sorted(
        [event.event_id for event in events] * 2)  # once per group: the --reason run's, then the unfiltered one's
    group = f"{pipeline_env['KAFKA_CONSUMER_GROUP']}.redrive"
    assert sum(meta.offset for meta in committed(admin, group).values()) == len(events)


@pytest.mark.parametrize("missing_grant, error, advice", [
    ("write_topic", "AuthorizationFailedError", "Describe and Write on topic {KAFKA_TOPIC}"),
    ("read_group", "GroupAuthorizationFailedError", "Read on the groups prefixed {KAFKA_CONSUMER_GROUP}.redrive"),
], ids=["write-topic", "read-group"])
def test_redrive_without_its_grants_stops_with_one_line_naming_the_acl_and_moves_nothing(
        secured, admin, admin_config, bootstrap_servers, pipeline_env, topics, missing_grant, error, advice):
    allow(admin, *grants_to_redrive(pipeline_env, **{missing_grant: False}))
    publish_dead_letters(bootstrap_servers, admin_config, *topics, [valid_event() for _ in range(3)])

    line = refused(secured, *REDRIVE)

    assert error in line and advice.format(**pipeline_env) in line, line
    assert committed(admin, f"{pipeline_env['KAFKA_CONSUMER_GROUP']}.redrive") == {}
    assert read_topic(bootstrap_servers, topics[0], **admin_config) == []
