"""What the tests share that is not a fixture, one module per concern; fixtures live in tests/conftest.py.

A test module imports from here (`from tests.support.waiting import wait_for`) and takes fixtures as
arguments; it never imports another test module or conftest. Where a new helper goes:

- `waiting`: waiting on a condition with a deadline, the only way a test waits.
- `http`: GET requests to a server process, answers as values.
- `metrics`: Prometheus scrapes, read the way Prometheus reads them.
- `servers`: processes the tests run: the production API, `manage.py` commands, Django's tables,
  and `frozen`, a server that hangs.
- `broker`: Kafka as a client sees it: publishing records, committed and end offsets.
- `commands`: the consumer's and the producer's command lines and the totals they print.
- `builders`: valid test data (events, stored logs) and the consumer's `Pipeline` around a test's clients.
- `hostile`: records other clients can write and kafka-python cannot.
- `fakes`: stand-ins for a clock and a producer in unit tests.
- `brokers`: which brokers a run puts under test, and the servers started in the background.

A helper used by one test module stays in that module.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
