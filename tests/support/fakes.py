"""Stand-ins for a clock and for KafkaProducer, for unit tests of loops that would otherwise wait or send."""


class FakeClock:
    """Time that moves only when a test moves `now`, or when the code under test sleeps (plus `oversleep`);
    `send_cost` is what a stand-in producer adds to it per send."""

    def __init__(self, send_cost=0.0, oversleep=0.0):
        self.now = 1000.0
        self.send_cost = send_cost
        self.oversleep = oversleep

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds + self.oversleep


class AcknowledgedAtOnce:
    """For stand-ins of KafkaProducer in unit tests of the publishing loop: every send is its own
    future, acknowledged at once (kafka-python calls the callback with the record's metadata)."""

    flushed = False

    def add_callback(self, callback):
        callback(None)
        return self

    def add_errback(self, callback, *args):
        return self

    def flush(self, timeout=None):
        self.flushed = True
