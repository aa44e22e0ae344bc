"""`python manage.py consume_activity`: validate events from Kafka and store each one exactly once."""

import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from logs import metrics
from logs.broker import BrokerUnavailable, create_consumer, create_producer, ensure_topics
from logs.consuming import Interrupted, consume_activity, retry_until_done
from logs.documents import ActivityLog
from logs.layout import CollectionUnusable
from logs.storage import prepare_storage

from ._arguments import number
from ._signals import StopRequested

log = logging.getLogger("logs.consumer")


class Command(BaseCommand):
    # Django's system checks inspect URLs, views and templates this command never uses; skipping them
    # saves a fifth of a second at every start.
    requires_system_checks = []
    help = (
        "Read activity events from Kafka in a consumer group, validate them, store each one exactly once "
        "in MongoDB and send rejects to the dead-letter topic. Runs until SIGINT/SIGTERM."
    )

    def add_arguments(self, parser):
        parser.add_argument("--idle-timeout", type=number(float, at_least=0), metavar="SECONDS",
                            help="exit 0 once no event has arrived for this long (backfills, scripts, tests)")
        parser.add_argument("--batch-size", type=number(int, at_least=1, at_most=10_000), default=500,
                            help="most events written in one bulk write (default 500)")
        parser.add_argument("--metrics-port", type=number(int, at_least=0, at_most=65535), default=settings.METRICS_PORT,
                            help=f"serve Prometheus metrics on this port, 0 for none (default {settings.METRICS_PORT})")

    def handle(self, *args, idle_timeout, batch_size, metrics_port, **options):
        stop = StopRequested().install()
        topic, dlq_topic, group = settings.KAFKA_TOPIC, settings.KAFKA_DLQ_TOPIC, settings.KAFKA_CONSUMER_GROUP
        try:
            metrics.start_metrics_server(port=metrics_port)
        except OSError as exc:
            raise CommandError(f"cannot serve metrics on port {metrics_port} ({exc}); pass --metrics-port 0 "
                               "or another port") from None
        try:
            # Wait out a database or broker that is still starting (compose, Kubernetes) instead of failing.
            retry_until_done(prepare_storage, what="connecting to MongoDB", should_stop=stop)
            retry_until_done(lambda: ensure_topics(topic, dlq_topic), what="connecting to Kafka", should_stop=stop,
                             transient=(BrokerUnavailable,))
            consumer = create_consumer()
            dlq_producer = create_producer(client_id="activity-dead-letter")
        except Interrupted:
            self.stdout.write("stopped before the consumer started")
            return
        except (BrokerUnavailable, CollectionUnusable) as exc:
            raise CommandError(str(exc)) from None
        log.info("consuming %s as group %s (dead letters to %s), storing in %s", topic, group, dlq_topic,
                 ActivityLog._get_db().name)
        try:
            totals = consume_activity(
                consumer=consumer, collection=ActivityLog._get_collection(), dlq_producer=dlq_producer,
                topic=topic, dlq_topic=dlq_topic, group=group, should_stop=stop, idle_timeout=idle_timeout,
                batch_size=batch_size, on_batch=self.record_batch, on_lag=self.record_lag, on_summary=self.summarize,
            )
        except Interrupted as exc:
            log.warning("stopped while %s was still failing; that batch is not committed and will be "
                        "consumed again on restart", exc)
            return
        finally:
            consumer.close(autocommit=False)
            dlq_producer.close()
        log.info("stopped%s: %s", f" by {stop.signal_name}" if stop else "", self.describe(totals))

    @staticmethod
    def record_batch(result, write_seconds):
        metrics.record_batch(received=result.received, stored=result.stored, duplicates=result.duplicates,
                             dead_lettered=result.dead_lettered, write_seconds=write_seconds)

    @staticmethod
    def record_lag(lag):
        metrics.record_lag(lag_by_partition=lag)

    @classmethod
    def summarize(cls, totals, previous, lag, seconds):
        rate = (totals.received - previous.received) / seconds if seconds > 0 else 0.0
        log.info("%s; %.1f events/s; lag %d", cls.describe(totals), rate, sum(lag.values()))

    @staticmethod
    def describe(totals):
        return (f"received {totals.received}, stored {totals.stored}, duplicates skipped {totals.duplicates}, "
                f"dead-lettered {totals.dead_lettered}")
