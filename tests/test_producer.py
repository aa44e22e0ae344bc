"""`produce_activity` tells the truth: what it counts, what it refuses, and every compression codec."""

import itertools
import threading

import pytest

from logs.pipeline.broker import COMPRESSION_CODECS
from stack.topics import read_topic
from tests.support.commands import consume
from tests.support.servers import ManagePy
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def assert_one_error_line(result, *expected):
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0]


def test_a_rate_that_cannot_be_scheduled_is_refused():
    result = ManagePy({}).run("produce_activity", "--rate", "1e9", "--count", "1")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "argument --rate: '1e9' is not a number, greater than 0, at most" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("configured", ["", " , ", "localhost:notaport", "localhost:99999", "kafka://host:9092"])
@pytest.mark.parametrize("command", [("produce_activity", "--count", "1"),
                                     ("consume_activity", "--idle-timeout", "1", "--metrics-port", "0")])
def test_a_malformed_bootstrap_setting_is_one_clear_error_line(command, configured, mongodb_uri):
    result = ManagePy({"KAFKA_BOOTSTRAP_SERVERS": configured, "MONGODB_URI": mongodb_uri,
                       "MONGODB_SERVER_SELECTION_TIMEOUT_MS": "2000"}).run(*command)
    assert_one_error_line(result, "KAFKA_BOOTSTRAP_SERVERS")


@pytest.mark.brokers("tansu", "kafka")  # each broker stores and serves the compressed batches itself
@pytest.mark.parametrize("codec", [codec for codec in COMPRESSION_CODECS if codec != "none"])
def test_events_in_every_compression_codec_are_stored(codec, manage, pipeline_env, bootstrap_servers,
                                                      activity_collection):
    result = manage.run("produce_activity", "--compression", codec, "--rate", "2000", "--count", "300",
                        "--seed", "81")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(read_topic(bootstrap_servers, pipeline_env["KAFKA_TOPIC"])) == 300

    consume(manage)
    assert activity_collection.count_documents({}) == 300
    assert read_topic(bootstrap_servers, pipeline_env["KAFKA_DLQ_TOPIC"]) == []


def close(producer):
    producer.close()


def stop_sender(producer):
    producer._sender.force_close()


@pytest.mark.parametrize("break_producer", [close, stop_sender], ids=["closed", "sender-stopped"])
def test_a_producer_broken_from_another_thread_mid_run_is_replaced_and_every_event_is_acknowledged(
        break_producer, pipeline_env, bootstrap_servers, pipeline_topics):
    """As a shutdown hook or a library holding the same producer would break it, while events are in
    flight: `close()`, or its I/O thread stopped (`force_close`, which fails what it holds with
    IllegalStateError). `producer_broken()` sees it, `replace_producer` makes a new one, and every event the broken
    producer held or refused is sent again on that one."""
    from logs.pipeline.broker import create_producer
    from logs.pipeline.generator import generate_activity
    from logs.pipeline.producing import discard, publish_activity

    count, topic = 600, pipeline_env["KAFKA_TOPIC"]
    events = list(itertools.islice(generate_activity(users=20, seed=97), count))
    original, replaced, progress = create_producer(), [], []

    def replace(old):  # as produce_activity does
        replaced.append(old)
        discard(old)
        return create_producer()

    def break_once_a_third_is_acknowledged():
        wait_for(lambda: progress and progress[-1].acknowledged >= count // 3, timeout=60, interval=0.01,
                 message="a third of the events acknowledged")
        break_producer(original)

    breaker = threading.Thread(target=break_once_a_third_is_acknowledged)
    breaker.start()
    try:
        stats = publish_activity(producer=original, topic=topic, events=iter(events), rate=400, count=count,
                                 on_progress=lambda stats, now: progress.append(stats), progress_every=0.01,
                                 replace_producer=replace)
    finally:
        breaker.join(timeout=60)
    stats.producer.close()

    assert replaced == [original] and stats.producer is not original
    assert (stats.acknowledged, stats.failed, stats.unacknowledged) == (count, 0, 0), stats.errors
    on_topic = sorted(record.value for record in read_topic(bootstrap_servers, topic))
    if break_producer is close:  # a close sends what the producer holds first: nothing is sent twice
        assert on_topic == sorted(event.to_bytes() for event in events)
    else:  # a batch in flight when it stopped may have been written before it was failed, and is sent again
        assert sorted(set(on_topic)) == sorted(event.to_bytes() for event in events)
