"""WSGI entry point for gunicorn and other WSGI servers (and `runserver`, through WSGI_APPLICATION).

Two Django handlers serve the same URL map with the same settings. A request to the API (`/user-logs`)
that authenticates with `Authorization: Token` and does not ask for HTML goes through the middleware
such a request uses; every other request, a browser's above all, through all of MIDDLEWARE. What the
token handler leaves out (`BROWSER_ONLY_MIDDLEWARE` in the settings: the session, CSRF, the login's
user and lockouts, static files) does nothing for such a request: DRF answers a `Token` header from the
token alone and never reaches the session, its views are exempt from CSRF, and no static file lies under
`/user-logs`. Passing those layers was a sizeable part of what such a request cost
(docs/decisions/0023-token-requests-skip-browser-middleware.md).
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "activity_service.settings")

browser_application = get_wsgi_application()

from django.conf import settings  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from logs.storage.layout import refuse_to_serve_outdated_layout  # noqa: E402  (needs the app registry set up above)

TOKEN_API_PATH = "/user-logs"


def token_api_handler():
    """Django's WSGI handler with MIDDLEWARE less BROWSER_ONLY_MIDDLEWARE. A handler reads MIDDLEWARE once,
    when it is built; Django has no other way to give it a list, so the setting is overridden for that moment
    only (before any request is served) and then restored."""
    with override_settings(MIDDLEWARE=[name for name in settings.MIDDLEWARE
                                       if name not in settings.BROWSER_ONLY_MIDDLEWARE]):
        return WSGIHandler()


token_api_application = token_api_handler()


def is_token_api_request(environ):
    """A request to the API with `Authorization: Token ...` (DRF's keyword, in any case) that accepts no HTML."""
    return (environ.get("PATH_INFO", "").startswith(TOKEN_API_PATH)
            and environ.get("HTTP_AUTHORIZATION", "")[:6].lower() == "token "
            and "html" not in environ.get("HTTP_ACCEPT", ""))


def application(environ, start_response):
    handler = token_api_application if is_token_api_request(environ) else browser_application
    return handler(environ, start_response)


refuse_to_serve_outdated_layout()
