"""`produce_activity` tells the truth: what it counts, what it refuses, and every compression codec."""

import os
import subprocess
import sys

import pytest

from logs.broker import COMPRESSION_CODECS
from stack.topics import read_topic

from conftest import ROOT

pytestmark = pytest.mark.integration


def run_command(*args, env):
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def assert_one_error_line(result, *expected):
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0]


def test_a_rate_that_cannot_be_scheduled_is_refused():
    result = run_command("produce_activity", "--rate", "1e9", "--count", "1", env={})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "argument --rate: '1e9' is not a number, greater than 0, at most" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("configured", ["", " , ", "localhost:notaport", "localhost:99999", "kafka://host:9092"])
@pytest.mark.parametrize("command", [("produce_activity", "--count", "1"),
                                     ("consume_activity", "--idle-timeout", "1", "--metrics-port", "0")])
def test_a_malformed_bootstrap_setting_is_one_clear_error_line(command, configured, mongodb_uri):
    result = run_command(*command, env={"KAFKA_BOOTSTRAP_SERVERS": configured, "MONGODB_URI": mongodb_uri,
                                        "MONGODB_SERVER_SELECTION_TIMEOUT_MS": "2000"})
    assert_one_error_line(result, "KAFKA_BOOTSTRAP_SERVERS")


@pytest.mark.parametrize("codec", [codec for codec in COMPRESSION_CODECS if codec != "none"])
def test_events_in_every_compression_codec_are_stored(codec, manage, pipeline_env, bootstrap_servers,
                                                      activity_collection):
    result = manage.run("produce_activity", "--compression", codec, "--rate", "2000", "--count", "300",
                        "--seed", "81")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(read_topic(bootstrap_servers, pipeline_env["KAFKA_TOPIC"])) == 300

    consumed = manage.run("consume_activity", "--idle-timeout", "3", "--metrics-port", "0")
    assert consumed.returncode == 0, consumed.stdout + consumed.stderr
    assert activity_collection.count_documents({}) == 300
    assert read_topic(bootstrap_servers, pipeline_env["KAFKA_DLQ_TOPIC"]) == []
