"""API accounts and their tokens: the service behind `manage.py api_token` and `make run`'s local account."""

import dataclasses

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from rest_framework.authtoken.models import Token

from ..models import VIEW_ALL_ACTIVITY_LOGS


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    key: str
    account_created: bool
    token_created: bool
    reads_every_user: bool


def all_users_permission():
    app_label, codename = VIEW_ALL_ACTIVITY_LOGS.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


@transaction.atomic
def issue_api_token(*, username, all_users=False, rotate=False):
    """The account's API token, creating the account (without a usable password) if it is missing.

    `all_users` grants the all-users permission; without it an existing grant is left as it is.
    The same key comes back every time unless `rotate` replaces it, which revokes the old one at once.
    Raises ValidationError for a username Django would refuse.
    """
    User = get_user_model()
    try:
        user = User.objects.get_by_natural_key(username)
        account_created = False
    except User.DoesNotExist:
        user = User(username=username)
        user.set_unusable_password()
        user.full_clean()
        user.save()
        account_created = True
    if all_users:
        user.user_permissions.add(all_users_permission())
    if rotate:
        Token.objects.filter(user=user).delete()
    token, token_created = Token.objects.get_or_create(user=user)
    user = User.objects.get(pk=user.pk)  # a fresh object: has_perm caches the permissions it saw
    return IssuedToken(key=token.key, account_created=account_created, token_created=token_created,
                       reads_every_user=user.has_perm(VIEW_ALL_ACTIVITY_LOGS))
