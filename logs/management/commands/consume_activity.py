"""`python manage.py consume_activity`: validate events from Kafka and store each one exactly once."""

import gc
import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from kafka.errors import KafkaError

from logs.pipeline import metrics
from logs.pipeline.broker import (
    BrokerUnavailable,
    client_config,
    create_consumer,
    create_producer,
    ensure_topics,
    topic_configuration_errors,
)
from logs.pipeline.consuming import (
    Interrupted,
    Pipeline,
    classified,
    consume_activity,
    describe_totals,
    retry_until_done,
)
from logs.pipeline.failures import StopConsuming, Transient, describe
from logs.storage.documents import ActivityLog
from logs.storage.layout import CollectionUnusable
from logs.storage.preparation import prepare_storage

from ._arguments import number
from ._probes import add_metrics_port_argument, serve_metrics_and_probes
from ._signals import StopRequested

log = logging.getLogger("logs.consumer")
# Net allocations of container objects between two collections of the youngest generation: of the order of
# what one batch of the default size allocates, so that generation is collected about once a batch.
YOUNG_GENERATION_THRESHOLD = 10_000

def ensure_topics_or_wait(topic, dlq_topic):
    """Create the topics; a broker still starting is worth waiting for, a refusal (authentication,
    authorization, topic creation denied) is not."""
    try:
        ensure_topics(topic, dlq_topic)
    except BrokerUnavailable as exc:
        cause = exc.__cause__
        if isinstance(cause, KafkaError) and not cause.retriable:
            raise StopConsuming(f"connecting to Kafka: refused ({describe(cause)})") from exc
        raise Transient(str(exc)) from exc


def settle_garbage_collector():
    """Keep Python's cycle collector from walking the start-up heap every few thousand events.

    What start-up built (Django, the clients, their modules) lives as long as the process, so it is frozen
    out of the collector's passes; and the young generation is collected per batch rather than every few
    dozen events: a batch's records, events and documents form no cycles and are freed by reference
    counting, and the collector's passes over them while a batch is in flight were a large share of the
    consumer's CPU per event (docs/benchmarks.md "CPU per event (issue #18)"). Cycles are still collected, later.
    """
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])


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
        add_metrics_port_argument(parser, default=settings.METRICS_PORT)

    def handle(self, *args, idle_timeout, batch_size, metrics_port, **options):
        stop = StopRequested().install()
        topic, dlq_topic = settings.KAFKA_TOPIC, settings.KAFKA_DLQ_TOPIC
        if errors := topic_configuration_errors(topic, dlq_topic):
            raise CommandError("; ".join(errors))
        client_config()  # KAFKA_BOOTSTRAP_SERVERS and the login settings: one line now, not after MongoDB answers
        serve_metrics_and_probes(metrics_port, role=metrics.CONSUMER)
        try:
            # Wait out a database or broker that is still starting (compose, Kubernetes) instead of failing.
            retry_until_done(classified(prepare_storage, what="connecting to MongoDB"),
                             what="connecting to MongoDB", should_stop=stop)
            retry_until_done(classified(lambda: ensure_topics_or_wait(topic, dlq_topic), what="creating topics"),
                             what="connecting to Kafka", should_stop=stop)
            consumer = create_consumer()
            dlq_producer = create_producer(client_id="activity-dead-letter")
        except Interrupted:
            self.stdout.write("stopped before the consumer started")
            return
        except (BrokerUnavailable, StopConsuming, CollectionUnusable) as exc:
            raise CommandError(str(exc)) from None
        pipeline = Pipeline(
            consumer=consumer, collection=ActivityLog._get_collection(), dlq_producer=dlq_producer, topic=topic,
            dlq_topic=dlq_topic, group=settings.KAFKA_CONSUMER_GROUP,
            dlq_max_bytes=min(settings.KAFKA_DLQ_MAX_RECORD_BYTES, dlq_producer.config["max_request_size"]),
            open_reader=lambda: create_consumer(group_id=None, client_id="activity-undecodable-probe"),
            max_clock_skew_seconds=settings.ACTIVITY_MAX_CLOCK_SKEW_SECONDS,
            max_record_bytes=settings.KAFKA_MAX_RECORD_BYTES,
        )
        log.info("consuming %s as group %s (dead letters to %s), storing in %s", topic, pipeline.group, dlq_topic,
                 ActivityLog._get_db().name)
        settle_garbage_collector()
        failure = None
        try:
            totals = consume_activity(pipeline, should_stop=stop, idle_timeout=idle_timeout, batch_size=batch_size)
        except Interrupted as exc:
            log.warning("stopped while %s was still failing; that batch is not committed and will be "
                        "consumed again on restart", exc)
            return
        except StopConsuming as exc:
            failure = exc
        finally:
            self.close(consumer, dlq_producer)
        if failure is not None:
            raise CommandError(f"{failure}; nothing of the batch in hand was committed") from None
        log.info("stopped%s: %s", f" by {stop.signal_name}" if stop else "", describe_totals(totals))

    @staticmethod
    def close(consumer, dlq_producer):
        """Leave the group without committing; a rebalance or an unreachable broker at this point is no error."""
        try:
            consumer.close(autocommit=False)
        except KafkaError as exc:
            log.warning("leaving the consumer group: %s", exc)
        try:
            dlq_producer.close(timeout=10)
        except KafkaError as exc:
            log.warning("closing the dead-letter producer: %s", exc)
