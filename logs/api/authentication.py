"""How API clients prove who they are: DRF's token authentication, with each checked token remembered.

DRF reads the token and its user on every request, and the permission check reads the account's
permissions: three ORM queries, about a millisecond in all, on a path whose target is half that. A
checked token is remembered by the process for API_TOKEN_CACHE_SECONDS (`checked_tokens`), so a request
with it costs a dict lookup. A deleted or rotated token is forgotten at once by the process that deletes
it; other processes, and any change to the account or its permissions, see it within
API_TOKEN_CACHE_SECONDS.
"""

import logging

from django.conf import settings
from django.http import JsonResponse
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed, Throttled

from .local_cache import LocalCache, count_store
from .permissions import reads_every_user

log = logging.getLogger(__name__)


def _bad_tokens_key(address):
    return f"api-bad-tokens:{address}"


def bad_token_lockout_seconds(address):
    """Seconds an address stays refused after API_BAD_TOKEN_LIMIT unknown tokens; 0 while it may try."""
    failures = count_store().get(_bad_tokens_key(address), 0)
    return settings.API_LOGIN_LOCKOUT_SECONDS if failures >= settings.API_BAD_TOKEN_LIMIT else 0


def record_bad_token(address):
    """Counts an unknown token from `address`; the count lives for one lockout time from its first failure."""
    key, cache = _bad_tokens_key(address), count_store()
    cache.add(key, 0, settings.API_LOGIN_LOCKOUT_SECONDS)
    try:
        failures = cache.incr(key)
    except ValueError:  # expired between add and incr
        failures = 1
        cache.set(key, failures, settings.API_LOGIN_LOCKOUT_SECONDS)
    if failures == settings.API_BAD_TOKEN_LIMIT:
        log.warning("API tokens refused for %s s: %s unknown tokens from %s", settings.API_LOGIN_LOCKOUT_SECONDS,
                    failures, address, extra={"client_address": address, "failures": failures})


def login_locked_out(request, original_response=None, credentials=None):
    """django-axes' answer to a login from a locked-out username and address (AXES_LOCKOUT_CALLABLE)."""
    return JsonResponse({"detail": "Too many failed logins for this account from this address; try again later."},
                        status=429, headers={"Retry-After": str(settings.API_LOGIN_LOCKOUT_SECONDS)})


# The tokens this process has checked, each with its user and the user's permissions read, for
# API_TOKEN_CACHE_SECONDS. In the process rather than Django's cache: the contract makes the trust per process
# anyway (docs/decisions/0009-token-cache.md), and the threads of the process share one token and user
# object, which nothing changes once it is remembered (the permission cache is filled before).
checked_tokens = LocalCache(limit=10_000)


class CachedTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, as DRF's; a valid token's account is remembered for a while, and an
    address that sent API_BAD_TOKEN_LIMIT unknown tokens is refused (429) for API_LOGIN_LOCKOUT_SECONDS."""

    def authenticate(self, request):
        address = request.META.get("REMOTE_ADDR", "")
        wait = bad_token_lockout_seconds(address)
        if wait:
            raise Throttled(wait, detail="Too many requests with unknown tokens from this address.")
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            record_bad_token(address)
            raise

    def authenticate_credentials(self, key):
        """DRF's lookup (unknown key or inactive account: 401), skipped while `checked_tokens` holds the answer.

        The remembered token carries its user with the permissions already read, so the permission
        check of such a request makes no query either.
        """
        seconds = settings.API_TOKEN_CACHE_SECONDS
        token = checked_tokens.get(key) if seconds else None
        if token is None:
            user, token = super().authenticate_credentials(key)
            reads_every_user(user)  # fills the user's permission cache, which is remembered along with it
            if seconds:
                checked_tokens.set(key, token, seconds)
        return token.user, token


def forget_token(sender, instance, **kwargs):
    """post_delete of a Token (rotation, revocation): this process stops accepting the key at once."""
    checked_tokens.delete(instance.key)
