"""Apache Kafka's own Java producer, for tests that write to Kafka as a Java service does.

kafka-python will not send some records the protocol allows (a null key with a null value, a null header
value), and a test of transactions should not rest on one client's reading of the protocol. This runs
stack/java-producer/RecordWriter.java on `kafka-clients` (the broker's version, from Maven Central with
Maven into a cache on first use, compiled there with javac), fed commands on its stdin.
"""

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import apache_kafka

HERE = Path(__file__).resolve().parent / "java-producer"
CACHE = apache_kafka.CACHE.with_name(f"kafka-clients-{apache_kafka.KAFKA_VERSION}")
MAIN = "RecordWriter"


def classpath():
    """The compiled writer and its jars, built the first time (and again when the source changes)."""
    libs = apache_kafka.maven_dependencies(HERE / "pom.xml", CACHE / "libs",
                                           what=f"kafka-clients {apache_kafka.KAFKA_VERSION}")
    source = HERE / f"{MAIN}.java"
    classes = CACHE / "classes" / hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    if not (classes / f"{MAIN}.class").exists():
        javac = shutil.which("javac")
        if javac is None:
            raise RuntimeError(apache_kafka.MISSING_TOOLS)
        staging = classes.with_name(f"{classes.name}.building")
        shutil.rmtree(staging, ignore_errors=True)
        result = subprocess.run([javac, "-cp", f"{libs}/*", "-d", str(staging), str(source)], capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise RuntimeError(f"javac {source.name}: {result.stderr.strip()[-2000:]}")
        staging.rename(classes)
    return f"{classes}:{libs}/*"


@dataclass(frozen=True)
class Acked:
    topic: str
    partition: int
    offset: int


def _hex(data):
    """Bytes as RecordWriter reads them: "x" and their hex (so that empty bytes are a word too), or "-" for null."""
    return "-" if data is None else "x" + bytes(data).hex()


def send(topic, key, value, headers=(), *, partition=None):
    """The command that sends one record (bytes or None each; headers as (name, bytes or None))."""
    words = ["send", topic, "-" if partition is None else str(partition), _hex(key), _hex(value)]
    words += [f"{_hex(name.encode())}={_hex(data)}" for name, data in headers]
    return " ".join(words)


def write(bootstrap_servers, commands, *, transactional_id=None, compression=None, linger_ms=None, timeout=120):
    """Run the writer on `commands` (strings: `send(...)`, "begin", "commit", "abort", "flush", "crash").

    Returns (exit status, [Acked] in the order acknowledged). Raises when a record failed, unless the
    writer was told to crash.
    """
    java = shutil.which("java")
    if java is None:
        raise RuntimeError(apache_kafka.MISSING_TOOLS)
    arguments = [bootstrap_servers]
    for option, value in (("--transactional-id", transactional_id), ("--compression", compression),
                          ("--linger-ms", linger_ms)):
        if value is not None:
            arguments += [option, str(value)]
    result = subprocess.run([java, *apache_kafka.CLIENT_JVM_OPTIONS, "-cp", classpath(), MAIN, *arguments],
                            input="".join(f"{command}\n" for command in commands), capture_output=True, text=True,
                            timeout=timeout)
    acked = [Acked(words[1], int(words[2]), int(words[3]))
             for words in (line.split() for line in result.stdout.splitlines()) if words[:1] == ["acked"]]
    if result.returncode != 0 and "crash" not in commands or "failed " in result.stdout:
        raise RuntimeError(f"the Java writer exited {result.returncode}: "
                           f"{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return result.returncode, acked
