"""`python manage.py produce_activity --rate 5`: publish generated activity to Kafka."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from logs.pipeline import liveness, metrics
from logs.pipeline.broker import (
    COMPRESSION_CODECS,
    BrokerUnavailable,
    create_producer,
    ensure_topics,
    producer_grants,
    refusal_advice,
)
from logs.pipeline.generator import generate_activity
from logs.pipeline.producing import MAX_RATE, discard, publish_activity

from ._arguments import number
from ._probes import add_metrics_port_argument, serve_metrics_and_probes
from ._signals import StopRequested


class Command(BaseCommand):
    # Django's system checks inspect URLs, views and templates this command never uses; skipping them
    # saves a fifth of a second at every start.
    requires_system_checks = []
    help = (
        f"Generate coherent payments activity and publish it to the Kafka topic ({settings.KAFKA_TOPIC}) "
        "at a steady rate, until stopped (Ctrl-C) or --count events are sent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--rate", type=number(float, above=0, at_most=MAX_RATE), default=5.0,
                            help=f"events per second; fractions (0.5) and thousands are fine, at most {MAX_RATE:,} "
                                 "(default 5)")
        parser.add_argument("--count", type=number(int, at_least=1), help="stop after this many events")
        parser.add_argument("--users", type=number(int, at_least=1), default=50,
                            help="size of the user pool, user-1 … user-N (default 50)")
        parser.add_argument("--seed", type=int, help="makes the generated sequence reproducible")
        parser.add_argument("--progress-every", type=number(float, above=0), default=1.0, metavar="SECONDS",
                            help="seconds between two progress lines (default 1)")
        parser.add_argument("--compression", choices=COMPRESSION_CODECS, default="none",
                            help="compress batches with this Kafka codec (default none)")
        add_metrics_port_argument(parser, default=settings.PRODUCER_METRICS_PORT)

    def handle(self, *args, rate, count, users, seed, progress_every, compression, metrics_port, **options):
        stop = StopRequested().install()
        topic = settings.KAFKA_TOPIC
        codec = None if compression == "none" else compression
        serve_metrics_and_probes(metrics_port, role=metrics.PRODUCER)
        try:
            ensure_topics(topic, settings.KAFKA_DLQ_TOPIC)
            producer = create_producer(compression_type=codec)
        except BrokerUnavailable as exc:
            raise CommandError(str(exc)) from None
        liveness.mark_ready()
        target = f"{count} events" if count else "until stopped"
        self.stdout.write(f"producing to {topic} at {settings.KAFKA_BOOTSTRAP_SERVERS}: {rate:g}/s, "
                          f"{users} users, {target}")
        try:
            stats = publish_activity(
                producer=producer, topic=topic, events=generate_activity(users=users, seed=seed),
                rate=rate, count=count, should_stop=stop, on_progress=self.report(count), progress_every=progress_every,
                on_silence=self.report_silence, on_recovery=self.report_recovery,
                replace_producer=lambda old: self.replace(old, codec, stop),
            )
            producer = stats.producer
        finally:
            producer.close(timeout=5)
        self.report(count)(stats, stats.finished)
        if stats.refusal is not None:
            raise CommandError(f"{refusal_advice(stats.refusal, grants=producer_grants)}; stopped with "
                               f"{stats.acknowledged} events acknowledged")
        if stats.failed:
            raise CommandError(
                f"{stats.failed} of {stats.generated} events were refused by Kafka "
                f"({'; '.join(stats.errors)}). Check the broker and run again; the consumer stores each eventId once."
            )
        reason = f" (stopped by {stop.signal_name})" if stop else ""
        unacknowledged = f"; {stats.unacknowledged} sent but not acknowledged" if stats.unacknowledged else ""
        seconds = stats.finished - stats.started
        self.stdout.write(self.style.SUCCESS(
            f"done{reason}: {stats.acknowledged} events acknowledged in {seconds:.2f} s "
            f"({stats.rate(stats.finished):.2f}/s){unacknowledged}"))

    def report(self, count):
        def write(stats, now):
            done = stats.acknowledged
            progress = f"acknowledged {done}/{count} ({100 * done / count:.0f}%)" if count else f"acknowledged {done}"
            self.stdout.write(f"{progress}, {stats.rate(now):.1f}/s, {stats.unacknowledged} unacknowledged, "
                              f"{stats.failed} failed")
            self.stdout.flush()
        return write

    def report_silence(self, stats, seconds):
        self.stderr.write(f"Kafka at {settings.KAFKA_BOOTSTRAP_SERVERS} has acknowledged nothing for {seconds:.0f} s: "
                          f"{stats.unacknowledged} events unacknowledged; they are kept and sent again until it "
                          "answers")
        self.stderr.flush()

    def report_recovery(self, stats):
        self.stdout.write(f"Kafka acknowledges again; {stats.unacknowledged} events still unacknowledged")
        self.stdout.flush()

    def replace(self, old, codec, stop):
        """A new producer for one that can no longer send; what the old one held is sent again on it."""
        self.stderr.write("the Kafka producer can no longer send; starting a new one")
        discard(old)
        while True:
            try:
                return create_producer(compression_type=codec)
            except BrokerUnavailable as exc:
                if stop:
                    raise CommandError(str(exc)) from None
                self.stderr.write(f"{exc}; trying again")
