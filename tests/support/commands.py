"""The producer's and the consumer's command lines as the tests run them (through `ManagePy`), and the
totals the consumer prints when it stops."""

import re
import signal

from tests.support.broker import GroupProgress
from tests.support.waiting import wait_for

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


def consume(manage, *extra, timeout=120):
    """`consume_activity` until its group has committed every record of the topic, then stopped as an
    operator stops it (SIGTERM); returns its output.

    Waiting on the commits rather than on --idle-timeout spares each run the idle seconds, and asks more:
    every record read was stored or dead-lettered and committed. The consumer must have had its partitions
    assigned first, so that a topic with nothing left to read is seen to be so by the consumer itself.
    """
    consumer = manage.start("consume_activity", "--metrics-port", "0", *extra, name="consumer")
    [output] = stop_once_caught_up(manage, consumer, timeout=timeout)
    return output


def stop_once_caught_up(manage, *consumers, timeout=120, before_stop=None):
    """SIGTERM the running `consumers` of `manage`'s group once each has been assigned its partitions and
    the group has committed every record of the topic (calling `before_stop()` first, while they still run);
    asserts each stopped cleanly; returns their outputs."""
    env = manage.env
    progress = GroupProgress(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_TOPIC"], env["KAFKA_CONSUMER_GROUP"])
    try:
        wait_for(lambda: any(consumer.poll() is not None for consumer in consumers)
                 or all("assigned partitions:" in consumer.output() for consumer in consumers)
                 and progress.caught_up(),
                 timeout=timeout, interval=0.2, message="the group to commit every record of the topic")
        if before_stop is not None:
            before_stop()
    finally:
        progress.close()
        for consumer in consumers:
            if consumer.poll() is None:
                consumer.send_signal(signal.SIGTERM)
    outputs = []
    for consumer in consumers:
        consumer.wait(30)
        outputs.append(consumer.output())
        assert consumer.returncode == 0, outputs[-1]
    return outputs


def summary(output):
    """The consumer's final totals line, as numbers."""
    line = [line for line in output.splitlines() if "stopped" in line and "received" in line][-1]
    counts = dict(re.findall(r"(received|stored|duplicates skipped|dead-lettered) (\d+)", line))
    return {"received": int(counts["received"]), "stored": int(counts["stored"]),
            "duplicates": int(counts["duplicates skipped"]), "dead_lettered": int(counts["dead-lettered"])}
