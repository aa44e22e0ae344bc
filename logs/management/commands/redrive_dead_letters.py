"""`python manage.py redrive_dead_letters`: put dead-lettered records back on their source topic."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from logs.pipeline.broker import BrokerUnavailable
from logs.pipeline.dead_letter_headers import MAX_REDRIVE_ATTEMPTS
from logs.pipeline.failures import StopConsuming
from logs.pipeline.redrive import DEFAULT_MAX_ATTEMPTS, redrive_dead_letters, run_group

from ._arguments import number
from ._signals import StopRequested

# Reasons the summary shows one by one, most frequent first; the rest are added up in one line.
SHOWN_REASONS = 20


class Command(BaseCommand):
    # Django's system checks inspect URLs, views and templates this command never uses.
    requires_system_checks = []
    help = (
        f"Put the records of the dead-letter topic ({settings.KAFKA_DLQ_TOPIC}) back on their source topic "
        f"({settings.KAFKA_TOPIC}) with their original key, value and headers, from where the last run stopped "
        "to the end seen at start; prints progress, then a summary by reason. SIGINT/SIGTERM stop it cleanly."
    )

    def add_arguments(self, parser):
        parser.add_argument("--reason", metavar="TEXT",
                            help="only records whose dead-letter reason contains TEXT (case-sensitive); such a run "
                                 "keeps a position of its own, so the records it passes over stay for other runs")
        parser.add_argument("--dry-run", action="store_true",
                            help="say what would be re-driven and skipped; publish nothing, commit nothing")
        parser.add_argument("--max-attempts", type=number(int, at_least=1, at_most=MAX_REDRIVE_ATTEMPTS),
                            default=DEFAULT_MAX_ATTEMPTS, metavar="N",
                            help="leave a record that has been re-driven N times where it is "
                                 f"(default {DEFAULT_MAX_ATTEMPTS})")
        parser.add_argument("--limit", type=number(int, at_least=1), metavar="N",
                            help="re-drive at most N records; the next run goes on from there")
        parser.add_argument("--batch-size", type=number(int, at_least=1, at_most=10_000), default=500, metavar="N",
                            help="records sent, then committed, at a time (default 500)")
        parser.add_argument("--progress-every", type=number(float, above=0), default=1.0, metavar="SECONDS",
                            help="seconds between two progress lines (default 1)")

    def handle(self, *args, reason, dry_run, max_attempts, limit, batch_size, progress_every, **options):
        stop = StopRequested().install()
        source, dlq_topic = settings.KAFKA_TOPIC, settings.KAFKA_DLQ_TOPIC
        self.stdout.write(f"{'dry run: ' if dry_run else ''}re-driving {dlq_topic} to {source} as group "
                          f"{run_group(reason)}{f' (reasons containing {reason!r})' if reason is not None else ''}")
        try:
            summary = redrive_dead_letters(source=source, dlq_topic=dlq_topic, reason=reason, max_attempts=max_attempts,
                                           limit=limit, dry_run=dry_run, should_stop=stop, on_progress=self.progress,
                                           progress_every=progress_every, batch_size=batch_size)
        except (StopConsuming, BrokerUnavailable) as exc:
            raise CommandError(str(exc)) from None
        for line in summary_lines(summary, stopped_by=stop.signal_name):
            self.stdout.write(line)

    def progress(self, summary):
        share = f" ({100 * summary.read / summary.to_read:.0f}%)" if summary.to_read else ""
        verb = "would re-drive" if summary.dry_run else "re-driven"
        self.stdout.write(f"read {summary.read}/{summary.to_read}{share}: {verb} {summary.redriven}, "
                          f"skipped {summary.skipped}, other reasons {summary.other_reasons}")
        self.stdout.flush()


def summary_lines(summary, *, stopped_by=None):
    """The summary a run ends with: the totals, then one line per reason (re-driven, skipped and why)."""
    verb = "would re-drive" if summary.dry_run else "re-driven"
    lines = [f"{'dry run, nothing sent or committed: ' if summary.dry_run else ''}read {summary.read} of "
             f"{summary.to_read} dead letters in group {summary.group}: {verb} {summary.redriven} to {summary.source}, "
             f"skipped {summary.skipped}"]
    if summary.reason is not None:
        lines[0] += f", {summary.other_reasons} with other reasons left for other runs"
    tallies = sorted(summary.by_reason.items(), key=lambda item: -(item[1].redriven + sum(item[1].skipped.values())))
    for reason, tally in tallies[:SHOWN_REASONS]:
        line = f"  {reason!r}: {verb} {tally.redriven}"
        if tally.skipped:
            line += f", skipped {sum(tally.skipped.values())} (" + "; ".join(
                f"{why}: {count}" for why, count in tally.skipped.most_common()) + ")"
        if tally.originals:
            more = f" and {tally.cut - len(tally.originals)} more" if tally.cut > len(tally.originals) else ""
            line += f"; the whole originals are at {', '.join(tally.originals)}{more}"
        lines.append(line)
    if len(tallies) > SHOWN_REASONS:
        rest = tallies[SHOWN_REASONS:]
        lines.append(f"  {len(rest)} other reasons: {verb} {sum(tally.redriven for _, tally in rest)}, skipped "
                     f"{sum(sum(tally.skipped.values()) for _, tally in rest)}")
    if summary.nulls_sent_empty:
        lines.append(f"  {summary.nulls_sent_empty} header values that were null in the originals went back empty "
                     "(kafka-python sends no null header value)")
    if stopped_by is not None or summary.stopped is not None:
        lines.append(f"stopped{f' by {stopped_by}' if stopped_by else ''}"
                     f"{f': {summary.stopped}' if summary.stopped else ''}; the next run goes on from here")
    return lines
