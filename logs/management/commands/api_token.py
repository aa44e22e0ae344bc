"""`python manage.py api_token USERNAME [--all-users] [--rotate]`: an account's API token for scripts."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from logs.api.accounts import issue_api_token


class Command(BaseCommand):
    help = (
        "Print USERNAME's API token (send it as `Authorization: Token <key>`), creating the account if it is "
        "missing. The key is the last word of the last line; the same key on every run unless --rotate."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--all-users", action="store_true",
                            help="grant the permission to read every user's logs (without it an existing grant stays)")
        parser.add_argument("--rotate", action="store_true",
                            help="replace the token; the old key stops working at once")

    def handle(self, *args, username, all_users, rotate, **options):
        try:
            issued = issue_api_token(username=username, all_users=all_users, rotate=rotate)
        except ValidationError as error:
            raise CommandError(f"cannot create account {username!r}: {' '.join(error.messages)}") from None
        except DatabaseError as error:
            raise CommandError(f"{error} (has `python manage.py migrate` run on this DATABASE_URL?)") from None
        account = "created account" if issued.account_created else "account"
        scope = "every user's logs" if issued.reads_every_user else f"only logs with userId {username}"
        token = "new token" if issued.token_created else "existing token"
        self.stdout.write(f"{account} {username} reads {scope}")
        self.stdout.write(f"{token} for {username}: {issued.key}")
