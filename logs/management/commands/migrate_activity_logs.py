"""`python manage.py migrate_activity_logs`: upgrade a collection written by the previous version."""

import time

from django.core.management.base import BaseCommand, CommandError
from pymongo.errors import PyMongoError

from logs.storage.documents import ActivityLog
from logs.storage.migration import MigrationFailed, migrate_activity_logs

from ._arguments import number

PROGRESS_INTERVAL_SECONDS = 1.0


class Command(BaseCommand):
    requires_system_checks = []
    help = (
        "Upgrade the activity-log collection from the previous layout (ObjectId _id, unique eventId index) to "
        "this version's (the event id is the _id). Copies in batches, resumes where a killed run stopped, and "
        "does nothing on a collection already upgraded. Stop the consumers of the previous version first."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=number(int, at_least=1, at_most=100_000), default=1000,
                            help="logs copied per batch (default 1000)")

    def handle(self, *args, batch_size, **options):
        database = ActivityLog._get_db()
        self.stdout.write(f"upgrading {ActivityLog._get_collection_name()} in database {database.name}")
        started = time.monotonic()
        last_line = None

        def report(progress):
            nonlocal last_line
            now = time.monotonic()
            if last_line is not None and now - last_line < PROGRESS_INTERVAL_SECONDS:
                return
            last_line = now
            this_run = progress.copied - progress.resumed_from
            resumed = f" (resumed after {progress.resumed_from:,})" if progress.resumed_from else ""
            self.stdout.write(f"  copied {progress.copied:,} of {progress.total:,} logs{resumed}, "
                              f"{this_run / max(now - started, 1e-6):,.0f} logs/s")

        try:
            summary = migrate_activity_logs(batch_size=batch_size, on_progress=report)
        except MigrationFailed as exc:
            raise CommandError(f"{exc}; the old collection is untouched") from None
        except PyMongoError as exc:
            raise CommandError(f"MongoDB failed during the upgrade ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:200]}); run the command again to resume") from None
        self.stdout.write(summary)
