"""The local stack itself: `make run`'s supervisor and the Apache Kafka it can run."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from stack import apache_kafka, processes
from tests.support import ROOT
from tests.support.http import http_get
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def test_the_local_apache_kafka_is_the_version_docker_compose_runs():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{apache_kafka.KAFKA_VERSION}"


def test_an_unknown_local_broker_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("LOCAL_BROKER", "redpanda")
    with pytest.raises(RuntimeError, match="LOCAL_BROKER='redpanda' is not one of tansu, kafka"):
        processes.broker(processes.free_port())


def test_free_ports_lie_below_the_ephemeral_range_each_named_once_and_bindable():
    """An outgoing connection can take any port of the ephemeral range between the choice and the server's bind;
    the ports chosen below it cannot be taken that way."""
    low = processes.lowest_ephemeral_port()
    ports = [processes.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(port < low for port in ports), [port for port in ports if port >= low]
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind((processes.HOST, port))


def descendants(pid):
    """Every process below `pid`, from /proc (Linux), whatever session or group it moved to."""
    found, stack = set(), [pid]
    while stack:
        parent = stack.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    stack.append(child)
    return found


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def ports_free(ports):
    """Wait (bounded) until nothing listens on `ports`; name the listeners if something still does."""
    try:
        wait_for(lambda: not any(processes.port_open(port) for port in ports), timeout=15,
                 message=f"ports {ports} to be free")
    except AssertionError:
        listeners = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout.splitlines()
        raise AssertionError(
            f"still listening: {[line for line in listeners if any(f':{port} ' in line for port in ports)]}")


class MakeRun:
    """`python -m stack.run` on free ports with its own data folder, its output in a file."""

    def __init__(self, tmp_path, broker):
        self.log_dir = tmp_path
        self.env = {**os.environ, "LOCAL_BROKER": broker, "LOCAL_DATA_DIR": str(tmp_path / "data"),
                    "LOCAL_KAFKA_PORT": str(processes.free_port()), "LOCAL_MONGODB_PORT": str(processes.free_port()),
                    "API_PORT": str(processes.free_port()), "PYTHONUNBUFFERED": "1"}
        self.ports = [int(self.env[name]) for name in ("LOCAL_KAFKA_PORT", "LOCAL_MONGODB_PORT", "API_PORT")]
        self.process = None
        self.started = []

    def start(self, **popen):
        """Start (again, on the same ports and data) and wait until it says it is ready."""
        self.log_path = self.log_dir / f"make-run-{len(self.started) + 1}.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "stack.run"], cwd=ROOT, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True, **popen)
        self.started.append(self.process)
        wait_for(lambda: "| ready:" in self.output() or self.process.poll() is not None, timeout=240,
                 interval=0.5, message="make run to be ready")
        assert self.process.poll() is None, self.output()
        return self

    def start_piped(self):
        """Start with its output on a pipe that the test reads, as `make run | less` would; return once ready."""
        self.process = subprocess.Popen([sys.executable, "-m", "stack.run"], cwd=ROOT, env=self.env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(self.process)
        deadline = threading.Timer(240, self.process.kill)  # a make run that hangs must not hang the test
        deadline.start()
        seen = []
        try:
            for line in self.process.stdout:
                seen.append(line.decode(errors="replace"))
                if "| ready:" in seen[-1]:
                    return self
        finally:
            deadline.cancel()
        raise AssertionError("make run ended (or hung) before it was ready:\n" + "".join(seen))

    def output(self):
        return self.log_path.read_text()


@pytest.fixture
def make_run(request, tmp_path):
    """`make run` with LOCAL_BROKER set to the test's leg (see tests/conftest.py)."""
    run = MakeRun(tmp_path, request.param)
    yield run
    for process in run.started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.brokers("tansu", "kafka")  # the second run restarts each broker on the data the first left
def test_killing_make_run_outright_takes_every_child_with_it_and_a_second_run_starts_cleanly(make_run):
    make_run.start()
    first = make_run.process
    children = descendants(first.pid)
    names = {Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
             for pid in children}
    assert len(children) >= 5, names  # broker, database, consumer, producer, API

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    wait_for(lambda: not any(alive(pid) for pid in children), timeout=30,
             message="every child of the killed supervisor to die")
    ports_free(make_run.ports)

    make_run.start()  # the same ports and data folder
    make_run.process.send_signal(signal.SIGINT)
    assert make_run.process.wait(90) == 0, make_run.output()
    ports_free(make_run.ports)


def test_a_broken_pipe_on_its_output_stops_make_run_and_every_child(make_run):
    make_run.start_piped()
    children = descendants(make_run.process.pid)
    make_run.process.stdout.close()  # the reader goes away; the next progress line meets a broken pipe
    assert make_run.process.wait(90) == 0
    wait_for(lambda: not any(alive(pid) for pid in children), timeout=30, message="every child to stop")
    ports_free(make_run.ports)


def after_the_ready_line(output, name):
    """The lines `name` printed after make run's ready line."""
    return [line for line in output.split("| ready:", 1)[1].splitlines() if line.lstrip().startswith(f"{name} |")]


def test_a_closed_terminal_stops_make_run_and_every_child(make_run):
    make_run.start()
    # The newcomer's path: the printed curl, with the local account's token, reads the logs.
    token = re.search(r'Authorization: Token ([0-9a-f]{40})"', make_run.output()).group(1)
    api = f"http://{processes.HOST}:{make_run.env['API_PORT']}/user-logs?userId=user-1"
    assert http_get(api, headers={"Authorization": f"Token {token}"})[0] == 200
    assert http_get(api)[0] == 401
    # The ready line stays on screen: framed, and the producer's progress comes at the consumer's cadence.
    ready = [line for line in make_run.output().splitlines() if "| ready:" in line]
    lines = make_run.output().splitlines()
    at = lines.index(ready[0])
    assert lines[at - 1].endswith("=" * 40) and lines[at + 2].endswith("=" * 40), lines[at - 1:at + 3]
    wait_for(lambda: len(after_the_ready_line(make_run.output(), "consumer")) >= 2, timeout=60,
             message="two of the consumer's progress lines after the ready line")
    output = make_run.output()
    assert len(after_the_ready_line(output, "producer")) <= len(after_the_ready_line(output, "consumer")) + 1, output
    children = descendants(make_run.process.pid)
    make_run.process.send_signal(signal.SIGHUP)
    assert make_run.process.wait(90) == 0, make_run.output()
    assert not any(alive(pid) for pid in children)
    assert not any(processes.port_open(port) for port in make_run.ports)


def ignore_interrupts():
    """What a shell without job control does to a command it starts in the background (`make run &`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)


def test_sigterm_stops_make_run_started_in_the_background_with_interrupts_ignored(make_run):
    make_run.start(preexec_fn=ignore_interrupts)
    children = descendants(make_run.process.pid)
    make_run.process.send_signal(signal.SIGTERM)
    # Each child is given 30 s before it is killed: a child that ignored the supervisor's signal would
    # hold the stop past this bound.
    assert make_run.process.wait(25) == 0, make_run.output()
    wait_for(lambda: not any(alive(pid) for pid in children), timeout=15, message="every child to stop")
    output = make_run.output()
    assert "stopped by SIGTERM" in output and "done (stopped by SIGTERM)" in output, output
    ports_free(make_run.ports)
