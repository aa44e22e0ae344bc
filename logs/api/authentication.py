"""How API clients prove who they are: DRF's token authentication, with each checked token remembered.

DRF reads the token and its user on every request, and the permission check reads the account's
permissions: three ORM queries, about a millisecond in all, on a path whose target is half that. A
checked token is remembered by the process for API_TOKEN_CACHE_SECONDS (`CheckedTokens`), so a request
with it costs a dict lookup. A deleted or rotated token is forgotten at once by the process that deletes
it; other processes, and any change to the account or its permissions, see it within
API_TOKEN_CACHE_SECONDS.
"""

import logging
import threading
import time

from django.conf import settings
from django.http import JsonResponse
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed, Throttled

from .counts import count_store
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


class CheckedTokens:
    """The tokens this process has checked, each with its account and the account's permissions read, for a
    given number of seconds; at most `limit` of them, the longest remembered forgotten first.

    In the process's memory rather than Django's cache: the contract makes the trust per process anyway
    (docs/decisions/0009-token-cache.md), and a cache read unpickled the token and its user, two model
    instances, on every request. The threads of the process share one token and user object; nothing
    changes either once it is remembered (the permission cache is filled before).
    """

    def __init__(self, limit=10_000):
        self.limit = limit
        self.entries = {}  # key -> (time.monotonic() it expires at, token with its user)
        self.lock = threading.Lock()

    def get(self, key):
        """The token remembered for `key`, or None once it has expired or was never checked."""
        entry = self.entries.get(key)
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

    def remember(self, key, token, seconds):
        with self.lock:
            self.entries.pop(key, None)
            self.entries[key] = (time.monotonic() + seconds, token)
            while len(self.entries) > self.limit:
                del self.entries[next(iter(self.entries))]

    def forget(self, key):
        with self.lock:
            self.entries.pop(key, None)

    def clear(self):
        with self.lock:
            self.entries.clear()


checked_tokens = CheckedTokens()


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
                checked_tokens.remember(key, token, seconds)
        return token.user, token


def forget_token(sender, instance, **kwargs):
    """post_delete of a Token (rotation, revocation): this process stops accepting the key at once."""
    checked_tokens.forget(instance.key)
