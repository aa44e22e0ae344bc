"""Prometheus metrics and JSON logs, read the way Prometheus and a log collector read them: scraped
over HTTP from a real gunicorn API and a real consumer on the local broker and database."""

import io
import itertools
import json
import logging
import urllib.error
import urllib.request
import uuid

import pytest
from kafka import KafkaProducer

from activity_service.log_formats import JsonFormatter
from stack import processes
from tests.support.databases import own_database
from tests.support.http import http_get
from tests.support.metrics import scrape, value
from tests.support.servers import ProductionApi
from tests.support.waiting import wait_for


def samples_named(samples, name):
    return {dict(labels).get("partition"): sample for (sample_name, labels), sample in samples.items()
            if sample_name == name}


# --- JSON log lines ---------------------------------------------------------------------------------

def test_json_formatter_writes_one_parseable_line_with_extra_fields_and_traceback():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"test.json.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        raise ValueError("line one\nline two")
    except ValueError:
        logger.error("batch of %d failed", 3, exc_info=True, extra={"partition": 2, "when": object()})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, "a traceback must not break the one-object-per-line format"
    entry = json.loads(lines[0])
    assert entry["level"] == "ERROR" and entry["message"] == "batch of 3 failed"
    assert entry["partition"] == 2 and entry["when"].startswith("<object")
    assert "ValueError: line one" in entry["exception"]


# --- the API's request metrics, in one process --------------------------------------------------------

def sample(name, **labels):
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0


# WhiteNoise notes that `collectstatic` has not run; with finders on it serves the assets anyway.
@pytest.mark.filterwarnings("ignore:No directory at:UserWarning")
def test_every_answer_is_counted_by_status_view_and_method_and_timed(api_client, api_collection):
    """The five series docs/operations.md lists, under django-prometheus's names and labels, which the alerts
    and the dashboard read; a method outside HTTP's is one series, whatever the client sends."""
    counted = [("django_http_responses_total_by_status_view_method_total",
                dict(status="200", view="user-logs-list", method="GET")),
               ("django_http_responses_total_by_status_view_method_total",
                dict(status="400", view="user-logs-list", method="GET")),
               ("django_http_responses_total_by_status_view_method_total",
                dict(status="404", view="<unnamed view>", method="GET")),
               ("django_http_responses_total_by_status_view_method_total",
                dict(status="405", view="user-logs-list", method="<invalid method>")),
               ("django_http_requests_latency_seconds_by_view_method_count", dict(view="user-logs-list", method="GET")),
               ("django_http_requests_total_by_method_total", dict(method="GET")),
               ("django_http_responses_total_by_status_total", dict(status="400"))]
    before = [sample(name, **labels) for name, labels in counted]
    assert api_client.get("/user-logs").status_code == 200
    assert api_client.get("/user-logs?limit=0").status_code == 400
    assert api_client.get("/no-such-path").status_code == 404
    assert api_client.generic("BREW", "/user-logs").status_code == 405
    moved = [sample(name, **labels) - was for (name, labels), was in zip(counted, before)]
    assert moved == [1, 1, 1, 1, 2, 3, 1]
    assert sample("django_http_requests_latency_seconds_by_view_method_sum", view="user-logs-list", method="GET") > 0


def test_an_exception_no_middleware_answered_is_counted_by_its_type():
    from django.test import RequestFactory

    from activity_service.request_metrics import RequestMetricsMiddleware

    middleware = RequestMetricsMiddleware(lambda request: None)
    was = sample("django_http_exceptions_total_by_type_total", type="ZeroDivisionError")
    assert middleware.process_exception(RequestFactory().get("/user-logs"), ZeroDivisionError()) is None
    assert sample("django_http_exceptions_total_by_type_total", type="ZeroDivisionError") == was + 1


# --- the API under gunicorn -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gunicorn_api(mongodb_server, log_dir, tmp_path_factory, auth_database):
    """The API as the image runs it: two workers, JSON logs, metrics shared across workers on their own port.
    One for the module: each test counts what it changed itself (before and after)."""
    with own_database(mongodb_server, "test_metrics") as uri:
        server = ProductionApi(uri, log_dir, database_url=auth_database.url, LOG_FORMAT="json",
                               PROMETHEUS_MULTIPROC_DIR=str(tmp_path_factory.mktemp("prometheus")))
        yield server
        server.stop()


RESPONSES = "django_http_responses_total_by_status_view_method_total"
LATENCY_COUNT = "django_http_requests_latency_seconds_by_view_method_count"


def test_api_metrics_count_requests_by_endpoint_and_status_across_workers(gunicorn_api, live_auth_header):
    api = gunicorn_api
    before = scrape(api.metrics_url)
    for _ in range(12):
        assert http_get(f"{api.url}/readyz")[0] == 200
    for _ in range(5):
        assert http_get(f"{api.url}/user-logs?limit=0", headers=live_auth_header)[0] == 400
    for _ in range(3):
        assert http_get(f"{api.url}/user-logs", headers=live_auth_header)[0] == 200
    after = scrape(api.metrics_url)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    # Two workers share the requests; the scrape must add up both, whichever worker answers it.
    assert moved(RESPONSES, method="GET", status="200", view="readyz") == 12
    assert moved(RESPONSES, method="GET", status="400", view="user-logs-list") == 5
    assert moved(RESPONSES, method="GET", status="200", view="user-logs-list") == 3
    assert moved(LATENCY_COUNT, method="GET", view="readyz") == 12
    assert moved(LATENCY_COUNT, method="GET", view="user-logs-list") == 8


def test_api_metrics_are_served_on_the_metrics_port_only_and_to_get_only(gunicorn_api):
    api = gunicorn_api
    assert http_get(f"{api.url}/metrics")[0] == 404
    assert http_get(api.metrics_url)[0] == 200
    request = urllib.request.Request(api.metrics_url, data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405


def test_api_logs_are_one_json_object_per_line(gunicorn_api, live_auth_header):
    api = gunicorn_api
    logged_before = api.log_path.read_text().count("Bad Request")
    # Django logs a warning for a 4xx answer.
    assert http_get(f"{api.url}/user-logs?limit=0", headers=live_auth_header)[0] == 400
    wait_for(lambda: api.log_path.read_text().count("Bad Request") > logged_before, timeout=10,
             message="the 400 to be logged")
    lines = [line for line in api.log_path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]
    assert {entry["logger"] for entry in entries} >= {"gunicorn.error", "django.request"}
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)


# --- the consumer -----------------------------------------------------------------------------------

VALID = 24
REPLAYED = 6
INVALID = [b"{not json", json.dumps({"eventId": "x", "userId": "user-1", "action": "steal"}).encode()]


def test_consumer_metrics_count_received_stored_duplicate_and_dead_lettered_events(
        manage, pipeline_env, pipeline_topics):
    """The topics exist first, with their 3 partitions: the producer below asking Tansu for a topic the consumer
    has not created yet would have Tansu create it with its own partition count (a lag gauge for partition 3)."""
    metrics_port = processes.free_port()
    manage.env["METRICS_PORT"] = str(metrics_port)
    consumer = manage.start("consume_activity", "--idle-timeout", "90")
    url = f"http://{processes.HOST}:{metrics_port}/metrics"
    wait_for(lambda: consumer.poll() is not None or processes.port_open(metrics_port), timeout=30,
             message="the consumer's metrics port")
    assert consumer.poll() is None, consumer.output()

    from logs.pipeline.generator import generate_activity

    events = list(itertools.islice(generate_activity(users=6, seed=7), VALID))
    producer = KafkaProducer(bootstrap_servers=pipeline_env["KAFKA_BOOTSTRAP_SERVERS"], acks="all",
                             max_block_ms=30000)
    topic = pipeline_env["KAFKA_TOPIC"]
    try:
        assert producer.partitions_for(topic) == {0, 1, 2}
        for event in events:
            producer.send(topic, key=event.key, value=event.to_bytes())
        for raw in INVALID:
            producer.send(topic, key=b"user-1", value=raw)
        producer.flush(timeout=30)

        seen = []

        def counters_reach(expected):
            samples = scrape(url)
            seen.append(tuple(value(samples, f"activity_events_{name}_total")
                              for name in ("received", "stored", "duplicate")) + (
                tuple(value(samples, "activity_events_dead_lettered_total", reason=reason)
                      for reason in ("not_json", "schema")),))
            return seen[-1] == expected

        def wait_for_counters(expected, when):
            try:
                wait_for(lambda: counters_reach(expected), timeout=60, interval=0.5, message=when)
            except AssertionError as exc:
                raise AssertionError(f"{exc}: (received, stored, duplicate, (not JSON, schema)) should be "
                                     f"{expected}, last scraped {seen[-1]}; the consumer said:\n"
                                     f"{consumer.output()[-3000:]}") from None

        # Dead letters are counted by the class of their reason: one not JSON, one refused by the schema.
        wait_for_counters((VALID + len(INVALID), VALID, 0, (1, 1)), "the first delivery")

        # A replay of events already stored: received and skipped as duplicates, stored once.
        for event in events[:REPLAYED]:
            producer.send(topic, key=event.key, value=event.to_bytes())
        producer.flush(timeout=30)
        wait_for_counters((VALID + len(INVALID) + REPLAYED, VALID, REPLAYED, (1, 1)), "the replay")
    finally:
        producer.close()

    samples = scrape(url)
    assert value(samples, "activity_batch_write_seconds_count") >= 1
    assert value(samples, "activity_batch_write_seconds_sum") > 0
    assert value(samples, "process_cpu_seconds_total") > 0, "the process collector is missing"

    def caught_up():
        lag = samples_named(scrape(url), "activity_consumer_lag")
        return lag and all(sample == 0 for sample in lag.values()) and lag

    lag = wait_for(caught_up, timeout=30, interval=0.5, message="every held partition's lag to reach 0")
    assert set(lag) <= {"0", "1", "2"}
