"""Apache Kafka as a local server: the version docker-compose runs, from Maven Central, on this machine's Java.

The broker's jars are fetched with Maven on first use into a cache outside the repository (a minute or
so once; later starts reuse them). Each data folder is formatted once as a one-node KRaft cluster that is
both broker and controller, as docker-compose's `kafka` service is, and keeps topics, messages and the
groups' committed offsets across restarts.
"""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

# The image tag of docker-compose's `kafka` service (tests/test_deployment.py keeps the two equal).
KAFKA_VERSION = "3.9.1"
# Any base64 UUID; fixed so that a formatted data folder stays valid across restarts.
CLUSTER_ID = "a9Qm3sVnR2ePcLr8xT1kYw"
HERE = Path(__file__).resolve().parent / "apache-kafka"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "activity-service" / f"kafka-{KAFKA_VERSION}"
# Kafka's own scripts give the JVM 1 GB and G1; the local stack shares two cores and its memory with the
# rest, so a smaller heap, the serial collector, and only the quick JIT tier: the optimising tier's
# compilations cost more CPU at each start than a local broker's runs win back (docs/benchmarks.md,
# "The test suite"). A production broker runs Apache Kafka's own image, with its own settings.
JVM_OPTIONS = ["-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]
# The same for short-lived Java programs (the storage format, stack/java_producer.py): they never run
# long enough to gain from the optimising tier.
CLIENT_JVM_OPTIONS = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
MISSING_TOOLS = ("Apache Kafka needs Java 17 and Maven: run `sudo stack/install-system-packages.sh` "
                 "(or install openjdk-17-jre-headless and maven), or use LOCAL_BROKER=tansu")


def _required(tool):
    found = shutil.which(tool)
    if not found:
        raise RuntimeError(MISSING_TOOLS)
    return found


def library_path():
    """The folder of the broker's jars, fetched from Maven Central the first time."""
    return maven_dependencies(HERE / "pom.xml", CACHE / "libs", what=f"Apache Kafka {KAFKA_VERSION}")


def maven_dependencies(pom, libs, *, what):
    """`libs`, filled the first time with the runtime dependencies `pom` names (at KAFKA_VERSION) from Maven Central."""
    if libs.is_dir():
        return libs
    maven = _required("mvn")
    _required("java")
    libs.parent.mkdir(parents=True, exist_ok=True)
    print(f"fetching {what} from Maven Central into {libs} (first use only)", flush=True)
    # Into a fresh folder, renamed when whole: an interrupted fetch or a second one at the same time
    # never leaves a half-filled library behind.
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=libs.parent))
    result = subprocess.run(
        [maven, "--batch-mode", "--quiet", "--file", str(pom), "dependency:copy-dependencies",
         f"-Dkafka.version={KAFKA_VERSION}", "-DincludeScope=runtime", f"-DoutputDirectory={staging}"],
        capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        detail = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"Maven could not fetch {what}: {detail[0]}")
    try:
        staging.rename(libs)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process finished first; its copy is the same
    return libs


def server_properties(*, port, controller_port, data_dir, host, sasl_users=None, super_user=None):
    """The broker's configuration: docker-compose's `kafka` service, on loopback ports.

    Local tuning that is also right on a real cluster of one node: internal topics with one replica,
    and no wait for more members before a new group's first rebalance.

    With `sasl_users` ({name: password}) the client listener is SASL_PLAINTEXT with the PLAIN mechanism
    for them (and SCRAM-SHA-256/512 for users the super user adds) and KRaft's StandardAuthorizer: nothing
    is allowed without an ACL, except to `super_user` (one of `sasl_users`, also the broker's own identity
    on that listener) and to the controller listener's
    unauthenticated principal, which is the node talking to itself.
    """
    properties = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(Path(data_dir) / "logs"),
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # As in docker-compose: topics are created on purpose (ensure_topics), never by a typo'd name.
        "auto.create.topics.enable": "false",
    }
    if sasl_users:
        properties.update(sasl_properties(port=port, controller_port=controller_port, host=host,
                                          users=sasl_users, super_user=super_user))
    return properties


def sasl_properties(*, port, controller_port, host, users, super_user):
    """A SASL_PLAINTEXT/PLAIN client listener with ACLs (Kafka's "Authentication using SASL/PLAIN" and
    "Authorization and ACLs", KRaft)."""
    if super_user not in users:
        raise ValueError(f"the super user {super_user!r} must be one of the SASL users")
    for name, password in users.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not re.fullmatch(r"[^\"\\\s;]+", password):
            raise ValueError(f"SASL user {name!r}: names are [A-Za-z0-9_.-], passwords have no quote, "
                             "backslash, space or semicolon (they go into a JAAS line)")
    accounts = " ".join(f'user_{name}="{password}"' for name, password in users.items())
    return {
        "listeners": f"SASL_PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"SASL_PLAINTEXT://{host}:{port}",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        # SCRAM users are added at run time by the super user (AlterUserScramCredentials); the node
        # itself logs in with PLAIN.
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config":
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{super_user}" password="{users[super_user]}" {accounts};',
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # ANONYMOUS: the controller listener is PLAINTEXT on loopback, the node's own broker calling it.
        "super.users": f"User:{super_user};User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }


def prepare(*, port, controller_port, data_dir, host, sasl_users=None, super_user=None):
    """Write the configuration and format `data_dir` if it is new; return the command that runs the broker."""
    libs = library_path()
    java = _required("java")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "server.properties"
    properties = server_properties(port=port, controller_port=controller_port, data_dir=data_dir, host=host,
                                   sasl_users=sasl_users, super_user=super_user)
    config.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
    classpath = f"{libs}/*"
    logging = f"-Dlog4j.configuration=file:{HERE / 'log4j.properties'}"
    if not (data_dir / "logs" / "meta.properties").exists():
        result = subprocess.run([java, *CLIENT_JVM_OPTIONS, logging, "-cp", classpath, "kafka.tools.StorageTool",
                                 "format", "--cluster-id", CLUSTER_ID, "--config", str(config), "--ignore-formatted"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"cannot format Kafka's storage in {data_dir}: {result.stdout}{result.stderr}".strip())
    return [java, *JVM_OPTIONS, logging, "-cp", classpath, "kafka.Kafka", str(config)]
