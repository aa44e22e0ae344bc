"""How API clients prove who they are: DRF's token authentication, with each token's account cached.

DRF reads the token and its user on every request, and the permission check reads the account's
permissions: three ORM queries, about a millisecond in all, on a path whose target is half that. A
cached token costs one read of Django's default cache (in-process memory unless CACHES says otherwise).
A deleted or rotated token is forgotten at once by the process that deletes it; other processes, and any
change to the account or its permissions, see it within API_TOKEN_CACHE_SECONDS.
"""

import hashlib

from django.conf import settings
from django.core.cache import cache
from rest_framework.authentication import TokenAuthentication

from .permissions import reads_every_user


def _cache_key(key):
    # Hashed, so that a shared cache server never holds usable keys.
    return "api-token:" + hashlib.sha256(key.encode()).hexdigest()


class CachedTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, as DRF's; a valid token's account is remembered for a while."""

    def authenticate_credentials(self, key):
        """DRF's lookup (unknown key or inactive account: 401), skipped while the cache holds the answer.

        The cached token carries its user with the permissions already read, so the permission
        check of a cached request makes no query either.
        """
        cache_key = _cache_key(key)
        token = cache.get(cache_key) if settings.API_TOKEN_CACHE_SECONDS else None
        if token is None:
            user, token = super().authenticate_credentials(key)
            reads_every_user(user)  # fills the user's permission cache, which is stored along with it
            if settings.API_TOKEN_CACHE_SECONDS:
                cache.set(cache_key, token, settings.API_TOKEN_CACHE_SECONDS)
        return token.user, token


def forget_token(sender, instance, **kwargs):
    """post_delete of a Token (rotation, revocation): this process stops accepting the key at once."""
    cache.delete(_cache_key(instance.key))
