"""Every error answer is JSON (docs/contract.md "API"), including those Django gives outside DRF's views.

DRF's views answer their errors in JSON already (and in HTML to a browser, as the browsable API should).
Django's own error answers are HTML or empty: a disallowed Host (400, raised by `request.get_host()`), a
CSRF refusal (403), a method a plain view does not take (405 from `require_safe`), a body over Django's
limits (400). `JsonErrorsMiddleware` gives each of those the API's error shape, `{"detail": ...}`, with its
status and headers (Allow, Retry-After) kept; the security headers are added by the middleware around it.
"""

from http import HTTPStatus

from django.http import JsonResponse

KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def json_error(status, detail=None, *, headers=None):
    response = JsonResponse({"detail": detail or HTTPStatus(status).phrase + "."}, status=status, headers=headers)
    response["Content-Length"] = len(response.content)  # made after CommonMiddleware, which would set it
    return response


class JsonErrorsMiddleware:
    """An error answer that is neither DRF's (it has its own renderers) nor JSON becomes `{"detail": ...}`."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (response.status_code < 400 or hasattr(response, "accepted_renderer")
                or response.get("Content-Type", "").startswith("application/json")):
            return response
        headers = {name: response[name] for name in KEPT_HEADERS if response.has_header(name)}
        return json_error(response.status_code, headers=headers)


def bad_request(request, exception=None):
    """handler400: Django's answer to a SuspiciousOperation (a disallowed Host, a malformed request)."""
    return json_error(400, "Bad request." if exception is None else "Bad request: refused by the server's checks.")


def permission_denied(request, exception=None):
    return json_error(403)


def not_found(request, exception=None):
    """Unrouted paths answer JSON like the API does, not Django's HTML page."""
    return json_error(404, "Not found.")


def server_error(request):
    return json_error(500, "Server error.")


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: the browsable API's login form without its token, as JSON."""
    return json_error(403, "CSRF verification failed; reload the form and send it again.")

