"""Alerting and dashboards: the rules (deploy/prometheus/alerts.yml) checked and unit-tested by promtool, the
Kubernetes and docker-compose copies of the monitoring set-up, the Grafana dashboard, the dead-letter reason
classes and the metrics the rules read, and one real Prometheus scraping the real processes to show that
every metric the rules and the dashboard use exists."""

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import kubernetes_validate
import pytest
import yaml
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from logs.pipeline import metrics, reasons
from logs.pipeline.ingestion import CONFLICTING_CONTENT
from logs.pipeline.liveness import LoopHealth
from stack import processes
from tests.support import ROOT
from tests.support.http import http_response
from tests.support.waiting import wait_for

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
COMPOSE_PROMETHEUS = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "activity-service.json"
MONITORING = ROOT / "deploy" / "k8s" / "monitoring"
OPERATIONS = ROOT / "docs" / "operations.md"
KUBERNETES_VERSION = "1.33.0"

# Every metric the alert rules and the dashboard read, and so every metric the processes must export:
# the first test below holds the rules and the dashboard to this list, the Prometheus test holds the
# processes to it.
EXPORTED_METRICS = {
    # the consumer
    "activity_events_received_total", "activity_events_stored_total", "activity_events_duplicate_total",
    "activity_events_dead_lettered_total", "activity_batch_write_seconds_bucket", "activity_consumer_lag",
    "activity_consumer_undecodable_offset",
    # the consumer and the producer
    "activity_ready", "activity_live", "process_resident_memory_bytes", "process_cpu_seconds_total",
    # the producer
    "activity_producer_events_acknowledged_total", "activity_producer_events_failed_total",
    "activity_producer_unacknowledged",
    # the API (activity_service/request_metrics.py, from the gunicorn master)
    "django_http_responses_total_by_status_view_method_total",
    "django_http_requests_latency_seconds_by_view_method_bucket",
    # the blackbox exporter's probe of /healthz, and Prometheus itself
    "probe_success", "probe_duration_seconds", "up",
}
# Exported only during an incident (a partition paused on a damaged batch): Prometheus knows them from
# their HELP and TYPE lines, which the metrics port serves all the time.
INCIDENT_METRICS = {"activity_consumer_undecodable_offset"}
JOBS = {"activity-consumer", "activity-producer", "activity-api", "activity-api-healthz"}

_PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                 "offset"}


def metric_names(expr):
    """The metric names a PromQL expression reads: its identifiers that are neither functions, keywords,
    label names (in matchers and label lists) nor durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    return {name for name in re.findall(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()", text)} - _PROMQL_WORDS


def alert_rules():
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_queries():
    """(panel title, expression) for every query of every panel."""
    return [(panel["title"], target["expr"]) for panel in json.loads(DASHBOARD.read_text())["panels"]
            for target in panel.get("targets", [])]


def run_promtool(*args):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make system-packages` installs Debian's prometheus package"
    return subprocess.run([promtool, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120)


# --- the rules --------------------------------------------------------------------------------------

def test_the_rules_and_the_dashboard_read_exactly_the_metrics_the_processes_are_held_to_export():
    used = {name for rule in alert_rules() for name in metric_names(rule["expr"])}
    used |= {name for _, expr in dashboard_queries() for name in metric_names(expr)}
    assert used == EXPORTED_METRICS


def test_metric_names_are_read_from_an_expression_without_its_functions_labels_or_keywords():
    expr = ('sum by (job, reason) (rate(activity_events_dead_lettered_total{reason!="x y"}[10m])) / on (job) '
            'group_left sum by (job) (rate(activity_events_received_total[$__rate_interval])) > 0.01 and '
            'deriv(sum by (job) (activity_consumer_lag)[15m:1m]) > 0 or vector(0)')
    assert metric_names(expr) == {"activity_events_dead_lettered_total", "activity_events_received_total",
                                  "activity_consumer_lag"}


def test_promtool_accepts_the_rules_and_the_compose_prometheus_configuration():
    checked = run_promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # --syntax-only: the rule file's path is the one inside the compose container.
    configured = run_promtool("check", "config", "--syntax-only", COMPOSE_PROMETHEUS.name)
    assert configured.returncode == 0, configured.stdout + configured.stderr


def test_every_alert_rule_passes_its_promtool_unit_tests():
    tested = run_promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_must_not():
    fired, held = set(), set()
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else held).add(case["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fired == set(), "alerts no unit test fires"
    assert names - held == set(), "alerts no unit test holds back"


def github_anchors(markdown):
    """The anchors GitHub gives the headings of a Markdown file."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)}


def test_every_alert_has_a_severity_a_summary_a_description_and_its_runbook_entry():
    anchors = github_anchors(OPERATIONS.read_text())
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert annotations["summary"], name
        assert "{{" in annotations["description"], f"{name}: the description gives no value"
        # The runbook titles an alert's entry `### <alert>: <symptom>`.
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert (ROOT / page) == OPERATIONS and anchor.startswith(f"{name.lower()}-"), \
            f"{name}: {annotations['runbook_url']}"
        assert anchor in anchors, f"{name}: docs/operations.md has no runbook entry `### {name}: ...` at #{anchor}"


# --- where the rules run ----------------------------------------------------------------------------

def kustomize(folder):
    rendered = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    return [document for document in yaml.safe_load_all(rendered.stdout) if document]


@pytest.fixture(scope="module")
def monitoring():
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    return {(document["kind"], document["metadata"]["name"]): document for document in kustomize(MONITORING)}


def test_the_prometheusrule_carries_exactly_the_groups_of_the_rules_file(monitoring):
    rule = monitoring[("PrometheusRule", "activity-service")]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == {"groups": yaml.safe_load(RULES.read_text())["groups"]}, \
        "deploy/k8s/monitoring/prometheusrule.yaml differs from deploy/prometheus/alerts.yml: run `make prometheusrule`"


def test_the_monitoring_manifests_validate_and_the_operators_resources_use_only_their_documented_fields(monitoring):
    """kubernetes-validate knows the Kubernetes API, not the Prometheus Operator's CustomResourceDefinitions
    (monitoring.coreos.com): the built-in kinds are validated strictly, the Operator's kinds field by field
    against the fields of its API reference that these manifests use, so a misspelt field fails here rather
    than being dropped without a word by the API server."""
    operator_fields = {
        "PodMonitor": {"spec": {"jobLabel", "selector", "podMetricsEndpoints"},
                       "spec.podMetricsEndpoints": {"port", "path", "interval"}},
        "Probe": {"spec": {"jobName", "interval", "module", "prober", "targets"}, "spec.prober": {"url"},
                  "spec.targets": {"staticConfig"}, "spec.targets.staticConfig": {"static"}},
        "PrometheusRule": {"spec": {"groups"}},
    }
    for (kind, name), document in monitoring.items():
        assert document["metadata"]["namespace"] == "activity-service", name
        if kind not in operator_fields:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
            continue
        assert document["apiVersion"] == "monitoring.coreos.com/v1", name
        assert set(document) == {"apiVersion", "kind", "metadata", "spec"}, name
        for path, allowed in operator_fields[kind].items():
            found = document
            for key in path.split("."):
                found = found[key]
            for item in found if isinstance(found, list) else [found]:
                assert set(item) <= allowed, f"{kind} {name}: {path} has {sorted(set(item) - allowed)}"
    assert {kind for kind, _ in monitoring} == {"PodMonitor", "Probe", "PrometheusRule", "Deployment", "Service",
                                                "NetworkPolicy"}


def test_kubernetes_scrapes_under_the_job_names_the_rules_select(monitoring):
    base = [document for document in kustomize(ROOT / "deploy" / "k8s") if document["kind"] == "Deployment"]
    pod_monitor = monitoring[("PodMonitor", "activity-service")]["spec"]
    [endpoint] = pod_monitor["podMetricsEndpoints"]
    [expression] = pod_monitor["selector"]["matchExpressions"]
    jobs = set()
    for deployment in base:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        ports = {port["name"] for port in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert labels.get(expression["key"]) in expression["values"] and endpoint["port"] in ports, \
            f"{deployment['metadata']['name']} serves metrics the PodMonitor does not scrape"
        jobs.add(labels[pod_monitor["jobLabel"]])
    probe = monitoring[("Probe", "activity-api-healthz")]["spec"]
    jobs.add(probe["jobName"])
    assert jobs == JOBS
    [target] = probe["targets"]["staticConfig"]["static"]
    api = next(document for document in kustomize(ROOT / "deploy" / "k8s") if document["kind"] == "Service")
    assert target == f"http://{api['metadata']['name']}.activity-service.svc/healthz"
    [blackbox_port] = monitoring[("Service", "activity-blackbox-exporter")]["spec"]["ports"]
    assert probe["prober"]["url"] == f"activity-blackbox-exporter.activity-service.svc:{blackbox_port['port']}"


def test_compose_scrapes_under_the_job_names_the_rules_select_and_loads_the_rules_file():
    configuration = yaml.safe_load(COMPOSE_PROMETHEUS.read_text())
    assert {job["job_name"] for job in configuration["scrape_configs"]} == JOBS
    assert len(configuration["rule_files"]) == 1


@pytest.fixture(scope="module")
def compose():
    environment = {**{name: value for name, value in os.environ.items() if not name.endswith("_PORT")},
                   "DJANGO_SECRET_KEY": "k" * 50}
    result = subprocess.run(["docker-compose", "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
                             "config"], env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def mounts(service):
    """{path in the container: (source, read-only)} of a compose service's volumes."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            found[target] = (source, mode == ["ro"])
        else:
            found[volume["target"]] = (volume.get("source"), bool(volume.get("read_only")))
    return found


def test_compose_runs_prometheus_grafana_and_the_blackbox_exporter_pinned_and_provisioned(compose):
    for name in ("prometheus", "grafana", "blackbox-exporter"):
        image, _, tag = compose[name]["image"].partition(":")
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {compose[name]['image']} is not pinned to a version"
        assert compose[name].get("read_only") is True and compose[name].get("cap_drop") == ["ALL"], name
    prometheus, grafana = mounts(compose["prometheus"]), mounts(compose["grafana"])
    configuration = yaml.safe_load(COMPOSE_PROMETHEUS.read_text())
    assert prometheus["/etc/prometheus/prometheus.yml"] == (str(COMPOSE_PROMETHEUS), True)
    assert prometheus[configuration["rule_files"][0]] == (str(RULES), True)
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/activity-service.yml").read_text())
    assert grafana[provider["providers"][0]["options"]["path"]] == (str(DASHBOARD.parent), True)
    assert grafana["/etc/grafana/provisioning"] == (str(ROOT / "deploy" / "grafana" / "provisioning"), True)
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    # No credentials guard them: published on the host's loopback only.
    for name in ("prometheus", "grafana"):
        [port] = compose[name]["ports"]
        host = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
        assert host == "127.0.0.1", f"{name} is published beyond this machine: {port}"
    assert not compose["blackbox-exporter"].get("ports")
    assert compose["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


# --- the dashboard ----------------------------------------------------------------------------------

def test_the_dashboard_shows_ingestion_the_api_and_the_processes_health():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    titles = {panel["title"] for panel in panels}
    assert {"Ingest rate", "Consumer lag per partition", "Dead letters by reason", "Stored against duplicates skipped",
            "API requests by status", "API latency", "Ready and live", "Producer"} <= titles
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"] and all(target["expr"].strip() for target in panel["targets"]), panel["title"]


# --- dead-letter reasons and the metrics the rules read ---------------------------------------------

def decoder_reason(raw):
    from logs.events import ActivityEvent, InvalidEvent

    with pytest.raises(InvalidEvent) as refused:
        ActivityEvent.from_bytes(raw)
    return refused.value.reason


def header_name_reason():
    """The reason record_batches gives a record whose header name is not UTF-8, from a real v2 batch."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    from logs.pipeline.record_batches import read_batch

    class NotUtf8(str):
        def encode(self, *args, **kwargs):
            return b"\xff\xfename"

    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    builder.append(0, timestamp=0, key=b"user-1", value=b"{}", headers=[(NotUtf8("x"), b"v")])
    [record] = read_batch(bytes(builder.build()), topic="t", partition=0, max_record_bytes=1 << 20).records
    return record.problem


def uninflated_reason():
    """The reason record_batches gives a record too long to inflate (a decompression bomb), from a real batch."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    from logs.pipeline.record_batches import read_batch

    builder = DefaultRecordBatchBuilder(magic=2, compression_type=4, is_transactional=False, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 30)
    builder.append(0, timestamp=0, key=b"user-1", value=b"\0" * (2 << 20), headers=[])
    [record] = read_batch(bytes(builder.build()), topic="t", partition=0, max_record_bytes=1 << 20).records
    return record.problem


@pytest.mark.parametrize("reason, expected", [
    (lambda: decoder_reason(b"{not json"), reasons.NOT_JSON),
    (lambda: decoder_reason(b'{"a": NaN}'), reasons.NOT_JSON),
    (lambda: decoder_reason(b"\xef\xbb\xbf{}"), reasons.NOT_JSON),
    (lambda: decoder_reason(None), reasons.NOT_JSON),
    (lambda: decoder_reason(b"\xff\xfe"), reasons.NOT_UTF8),
    (lambda: decoder_reason(b" " * 20000), reasons.TOO_LARGE),
    (lambda: decoder_reason(b"[" * 40 + b"]" * 40), reasons.TOO_LARGE),
    (uninflated_reason, reasons.TOO_LARGE),
    (lambda: decoder_reason(b"[]"), reasons.SCHEMA),
    (lambda: decoder_reason(b'{"eventId": "x", "userId": "user-1", "action": "steal"}'), reasons.SCHEMA),
    (lambda: decoder_reason(b'{"zzz: not a field": 1}'), reasons.SCHEMA),
    (header_name_reason, reasons.HEADER),
    (lambda: CONFLICTING_CONTENT, reasons.CONFLICTING_CONTENT),
    # As write_documents words a document the server refuses, and record_batches a broken record.
    (lambda: "refused by MongoDB: code 121: Document failed validation", reasons.REFUSED_BY_MONGODB),
    (lambda: "malformed record at index 3 of its batch: a field of 9 bytes overruns the record",
     reasons.MALFORMED_RECORD),
    (lambda: "timestamp in the future: 2030-01-01T00:00:00Z is 3600 s after the record's", reasons.TIMESTAMP_IN_FUTURE),
    (lambda: "key does not match userId: 'user-2' is not 'user-1'", reasons.KEY_MISMATCH),
    (lambda: "a reason nobody wrote yet", reasons.OTHER),
])
def test_every_dead_letter_reason_falls_in_its_class(reason, expected):
    assert reasons.reason_class(reason()) == expected


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def test_dead_letters_are_counted_by_the_class_of_their_reason_and_every_class_exists_at_zero():
    registry = CollectorRegistry()
    registry.register(metrics.EVENTS_DEAD_LETTERED)
    before = {name: sample(registry, "activity_events_dead_lettered_total", reason=name)
              for name in reasons.REASON_CLASSES}
    assert None not in before.values(), "a class that is not exported before its first dead letter"
    metrics.record_batch(received=3, stored=0, duplicates=0, write_seconds=None,
                         dead_letter_reasons=["not JSON: Expecting value", "eventId: required", "not JSON: x"])
    moved = {name: sample(registry, "activity_events_dead_lettered_total", reason=name) - before[name]
             for name in reasons.REASON_CLASSES}
    assert moved == {name: {reasons.NOT_JSON: 2, reasons.SCHEMA: 1}.get(name, 0) for name in reasons.REASON_CLASSES}


def test_ready_and_live_are_what_the_probes_of_the_same_loop_answer():
    now = [100.0]
    health = LoopHealth(clock=lambda: now[0])
    registry = CollectorRegistry()
    registry.register(metrics.LoopCollector(health=health, role="consumer", liveness_timeout=5))
    assert (sample(registry, "activity_ready", role="consumer"), sample(registry, "activity_live", role="consumer")) \
        == (0, 1)
    health.mark_ready()
    health.beat()
    assert sample(registry, "activity_ready", role="consumer") == 1
    now[0] += 6
    assert sample(registry, "activity_live", role="consumer") == 0


def test_a_paused_partitions_offset_is_reported_only_by_the_process_that_holds_the_partition():
    registry = CollectorRegistry()
    registry.register(metrics.UNDECODABLE_OFFSET)
    metrics.record_undecodable(partition=7, offset=4711)
    metrics.record_assignment(partitions={6, 7})
    assert sample(registry, "activity_consumer_undecodable_offset", partition="7") == 4711
    metrics.record_assignment(partitions={6})
    assert sample(registry, "activity_consumer_undecodable_offset", partition="7") is None


# --- one real Prometheus ----------------------------------------------------------------------------

def prometheus_api(base, path, **params):
    url = f"{base}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"]


def scrape_job(name, port):
    return {"job_name": name, "static_configs": [{"targets": [f"{processes.HOST}:{port}"]}]}


@pytest.fixture
def blackbox_exporter(log_dir):
    port = processes.free_port()
    command = [shutil.which("prometheus-blackbox-exporter") or "prometheus-blackbox-exporter",
               "--config.file=/etc/prometheus/blackbox.yml", f"--web.listen-address={processes.HOST}:{port}"]
    server = processes.ServerProcess("blackbox exporter", command, port, log_dir / "blackbox-exporter.log").start()
    yield server
    server.stop()


def start_prometheus(tmp_path, log_dir, scrape_configs):
    """Debian's Prometheus on a free port, scraping every second and evaluating the rules every second."""
    port = processes.free_port()
    configuration = tmp_path / "prometheus.yml"
    configuration.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": scrape_configs,
    }))
    command = [shutil.which("prometheus") or "prometheus", f"--config.file={configuration}",
               f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address={processes.HOST}:{port}"]
    url = f"http://{processes.HOST}:{port}"
    server = processes.ServerProcess("prometheus", command, port, log_dir / f"prometheus-{tmp_path.name}.log",
                                     ready=lambda: processes.port_open(port) and answers(f"{url}/-/ready"))
    server.url = url
    return server.start()


def answers(url):
    """True once `url` answers 200 (Prometheus answers its API with 503 until its storage is open)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def test_a_real_prometheus_scrapes_every_metric_the_rules_and_the_dashboard_use(
        manage, pipeline_env, pipeline_topics, production_api, blackbox_exporter, live_auth_header,
        tmp_path, log_dir):
    consumer_port, producer_port = processes.free_port(), processes.free_port()
    consumer = manage.start("consume_activity", "--metrics-port", str(consumer_port))
    producer = manage.start("produce_activity", "--rate", "20", "--metrics-port", str(producer_port))
    sender = KafkaProducer(bootstrap_servers=pipeline_env["KAFKA_BOOTSTRAP_SERVERS"], acks="all")
    try:
        sender.send(pipeline_env["KAFKA_TOPIC"], key=b"user-1", value=b"{not json").get(timeout=30)
    finally:
        sender.close()

    def status(path):
        return http_response(f"{production_api.url}{path}", headers=live_auth_header)[0]

    # Ready once the consumer has prepared the collection (the API serves no collection in an older layout).
    # A request may also meet its deadline on a loaded machine (503): that is an answer too, asked again.
    wait_for(lambda: status("/readyz") == 200, timeout=60, message="the API ready")
    wait_for(lambda: status("/user-logs") == 200, timeout=60, message="the API to answer /user-logs")

    prometheus = start_prometheus(tmp_path, log_dir, [
        scrape_job("activity-consumer", consumer_port),
        scrape_job("activity-producer", producer_port),
        scrape_job("activity-api", production_api.metrics_port),
        {**scrape_job("activity-api-healthz", blackbox_exporter.port), "metrics_path": "/probe",
         "params": {"module": ["http_2xx"], "target": [f"{production_api.url}/healthz"]}},
    ])
    try:
        def query(expr):
            return prometheus_api(prometheus.url, "query", query=expr)["result"]

        def seen():
            return set(prometheus_api(prometheus.url, "label/__name__/values"))

        missing = []

        def every_metric_seen():
            missing[:] = sorted(EXPORTED_METRICS - INCIDENT_METRICS - seen())
            return not missing and query('sum(activity_events_dead_lettered_total{reason="not_json"}) >= 1')

        try:
            wait_for(every_metric_seen, timeout=90, message="every metric scraped")
        except AssertionError:
            raise AssertionError(f"never scraped: {missing}; consumer: {consumer.output()[-1500:]}; "
                                 f"producer: {producer.output()[-1500:]}") from None
        known = prometheus_api(prometheus.url, "metadata")
        assert INCIDENT_METRICS <= set(known), "an incident metric's HELP and TYPE are not served"

        targets = prometheus_api(prometheus.url, "targets")["activeTargets"]
        assert {target["labels"]["job"]: target["health"] for target in targets} == dict.fromkeys(JOBS, "up")
        wait_for(lambda: query('activity_ready{role="consumer"} == 1'), timeout=60, message="the consumer ready")
        assert query('activity_ready{role="producer"} == 1') and query("probe_success == 1")
        assert query("activity_producer_events_acknowledged_total > 0")

        # The rules load, evaluate without error on what the processes export, and nothing fires on a healthy system.
        def evaluated():
            rules = [rule for group in prometheus_api(prometheus.url, "rules")["groups"] for rule in group["rules"]]
            return len(rules) == len(alert_rules()) and all(rule["health"] != "unknown" for rule in rules) and rules

        for rule in wait_for(evaluated, timeout=30, message="every rule evaluated"):
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
        assert query('ALERTS{alertstate="firing"}') == []

        for title, expr in dashboard_queries():
            prometheus_api(prometheus.url, "query", query=expr.replace("$__rate_interval", "1m"))
        wait_for(lambda: query("sum(rate(activity_events_stored_total[1m])) > 0"), timeout=60,
                 message="the dashboard's ingest rate to show the producer's events stored")
    finally:
        prometheus.stop()
