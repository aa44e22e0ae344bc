"""The producer's and the consumer's command lines as the tests run them (through `ManagePy`), and the
totals the consumer prints when it stops."""

import re

# Stops after 5 s without events, counted from its partitions' assignment: time enough for the first fetch
# on a busy machine (with 3 s, two runs of 40 stopped before it, with pytest-xdist and load 15 on 2 cores).
# A metrics port of 0 serves none (several consumers run at once).
CONSUME = ("consume_activity", "--idle-timeout", "5", "--metrics-port", "0")


def produce(manage, count, *, seed=1, users=20, rate=2000):
    """`produce_activity` for `count` events, which must all be acknowledged."""
    result = manage.run("produce_activity", "--rate", str(rate), "--count", str(count), "--seed", str(seed),
                        "--users", str(users))
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def consume(manage, *extra):
    """`consume_activity` until the topic has been idle for 5 s; returns its output."""
    result = manage.run(*CONSUME, *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def summary(output):
    """The consumer's final totals line, as numbers."""
    line = [line for line in output.splitlines() if "stopped" in line and "received" in line][-1]
    counts = dict(re.findall(r"(received|stored|duplicates skipped|dead-lettered) (\d+)", line))
    return {"received": int(counts["received"]), "stored": int(counts["stored"]),
            "duplicates": int(counts["duplicates skipped"]), "dead_lettered": int(counts["dead-lettered"])}
