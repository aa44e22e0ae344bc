"""Liveness and readiness of the consumer's and the producer's loops, as Kubernetes probes them: over
HTTP on the metrics port of the real commands, with the database frozen (SIGSTOP) so that the
consumer's loop hangs on a write that never returns."""

import itertools
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import yaml
from pymongo import MongoClient

from logs.pipeline.liveness import LoopHealth, loop_health
from logs.pipeline.metrics import probes_and_metrics
from logs.pipeline.producing import publish_activity
from stack import processes
from tests.support import ROOT
from tests.support.broker import publish
from tests.support.fakes import AcknowledgedAtOnce, FakeClock
from tests.support.http import http_get
from tests.support.servers import frozen
from tests.support.waiting import wait_for

BOUND_SECONDS = 2


def compose_health_check(env):
    """docker-compose's health check of the consumer and the producer, run here as Docker would run it."""
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["x-loop-healthcheck"]["test"]
    assert command[0] == "CMD"
    return subprocess.run([sys.executable, *command[2:]], env={**os.environ, **env}, capture_output=True,
                          timeout=30).returncode


def test_a_loop_counts_as_alive_until_it_has_been_silent_longer_than_the_bound():
    clock = FakeClock()
    health = LoopHealth(clock=clock)
    clock.now += 1000
    assert health.stalled_for(timeout=10) is None, "a process still starting is not restarted"
    health.beat()
    clock.now += 10
    assert health.stalled_for(timeout=10) is None
    clock.now += 0.5
    assert health.stalled_for(timeout=10) == 10.5
    health.beat()
    assert health.stalled_for(timeout=10) is None


def answer(app, path, method="GET"):
    statuses = []
    body = b"".join(app({"REQUEST_METHOD": method, "PATH_INFO": path},
                        lambda status, headers: statuses.append(status)))
    return int(statuses[0].split()[0]), body


def test_probe_endpoints_answer_from_the_loop_health_and_metrics_from_prometheus():
    clock = FakeClock()
    health = LoopHealth(clock=clock)
    app = probes_and_metrics(health=health, liveness_timeout=5)
    assert answer(app, "/readyz")[0] == 503
    health.mark_ready()
    health.beat()
    assert answer(app, "/readyz")[0] == 200 and answer(app, "/healthz")[0] == 200
    clock.now += 6
    status, body = answer(app, "/healthz")
    assert status == 503 and json.loads(body)["status"] == "stalled"
    assert answer(app, "/metrics")[0] == 200
    assert answer(app, "/metrics", method="POST")[0] == 405


class BlockingProducer(AcknowledgedAtOnce):
    """Stands in for the Kafka client only to hold the producer's loop inside `send`."""

    def __init__(self, block_at):
        self.block_at = block_at
        self.sent = 0
        self.release = threading.Event()

    def send(self, topic, key, value):
        self.sent += 1
        if self.sent == self.block_at:
            self.release.wait(timeout=30)
        return self


def test_the_producer_loop_beats_on_every_turn_and_stops_beating_while_stuck():
    from logs.pipeline.generator import generate_activity

    producer = BlockingProducer(block_at=3)
    run = threading.Thread(target=publish_activity, kwargs=dict(
        producer=producer, topic="t", events=generate_activity(users=3, seed=1), rate=50, count=6))
    run.start()
    try:
        wait_for(lambda: loop_health.stalled_for(timeout=0.3) is not None, timeout=10,
                 message="the producer's liveness to notice its loop is stuck in send")
    finally:
        producer.release.set()
        run.join(timeout=10)
    assert producer.sent == 6
    assert loop_health.stalled_for(timeout=0.3) is None


def stored(mongodb_uri):
    from logs.storage.documents import ActivityLog

    with MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000) as client:
        return client.get_default_database()[ActivityLog._get_collection_name()].count_documents({})


def send_events(bootstrap_servers, topic, events):
    publish(bootstrap_servers, topic, [(event.key, event.to_bytes()) for event in events])


@pytest.mark.integration
def test_consumer_is_ready_once_in_its_group_and_not_alive_while_its_loop_hangs(manage, pipeline_env,
                                                                                 mongodb_server):
    from logs.pipeline.generator import generate_activity

    port = processes.free_port()
    manage.env.update(METRICS_PORT=str(port), LIVENESS_TIMEOUT_SECONDS=str(BOUND_SECONDS))
    base = f"http://{processes.HOST}:{port}"
    events = generate_activity(users=5, seed=3)

    # Started while the database hangs: it waits at startup, alive but not ready (no group yet).
    with frozen(mongodb_server):
        consumer = manage.start("consume_activity")
        wait_for(lambda: consumer.poll() is not None or processes.port_open(port), timeout=30,
                 message="the consumer's metrics port")
        assert consumer.poll() is None, consumer.output()
        assert http_get(f"{base}/readyz")[0] == 503
        assert http_get(f"{base}/healthz")[0] == 200
    wait_for(lambda: http_get(f"{base}/readyz")[0] == 200, timeout=60, message="readiness after the group join")
    assert http_get(f"{base}/healthz")[0] == 200

    first = list(itertools.islice(events, 10))
    send_events(pipeline_env["KAFKA_BOOTSTRAP_SERVERS"], pipeline_env["KAFKA_TOPIC"], first)
    wait_for(lambda: stored(pipeline_env["MONGODB_URI"]) == len(first), timeout=60, message="the first events stored")

    # The database hangs under a write: the loop waits on it and stops polling.
    second = list(itertools.islice(events, 10))
    with frozen(mongodb_server):
        send_events(pipeline_env["KAFKA_BOOTSTRAP_SERVERS"], pipeline_env["KAFKA_TOPIC"], second)
        wait_for(lambda: http_get(f"{base}/healthz")[0] == 503, timeout=60,
                 message="liveness to fail while the loop hangs")
        assert compose_health_check({"METRICS_PORT": str(port)}) != 0
        assert consumer.poll() is None, "the consumer must hang, not exit"
    wait_for(lambda: http_get(f"{base}/healthz")[0] == 200, timeout=60, message="liveness to recover")
    assert compose_health_check({"METRICS_PORT": str(port)}) == 0
    wait_for(lambda: stored(pipeline_env["MONGODB_URI"]) == len(first) + len(second), timeout=60,
             message="the events sent during the hang stored")


@pytest.mark.integration
def test_producer_serves_readiness_and_liveness_once_connected(manage):
    port = processes.free_port()
    manage.env.update(PRODUCER_METRICS_PORT=str(port), LIVENESS_TIMEOUT_SECONDS=str(BOUND_SECONDS))
    base = f"http://{processes.HOST}:{port}"
    producer = manage.start("produce_activity", "--rate", "5")
    wait_for(lambda: producer.poll() is not None or processes.port_open(port), timeout=30,
             message="the producer's metrics port")
    wait_for(lambda: http_get(f"{base}/readyz")[0] == 200, timeout=60, message="the producer to be ready")
    # Alive past the bound, because its loop keeps turning; the liveness test above shows the bound bites.
    # Not a wait for something to happen: the time past the bound is what the test is about.
    time.sleep(BOUND_SECONDS + 1)
    assert producer.poll() is None, producer.output()
    assert http_get(f"{base}/healthz")[0] == 200
    assert compose_health_check({"PRODUCER_METRICS_PORT": str(port)}) == 0
    status, body = http_get(f"{base}/metrics")
    assert status == 200 and "process_cpu_seconds_total" in body
