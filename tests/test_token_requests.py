"""The WSGI entry's two handlers (activity_service/wsgi.py): a token-authenticated API request that accepts no
HTML skips the middleware only a browser uses, and is answered exactly as through all of MIDDLEWARE."""

import io
from datetime import timedelta

import pytest
from django.test import RequestFactory

from tests.support.builders import START, activity_event, store

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No directory at:UserWarning")]


@pytest.mark.parametrize(("path", "headers", "expected"), [
    ("/user-logs", {"HTTP_AUTHORIZATION": "Token abc"}, True),
    ("/user-logs/0b6a3f9e-2f41-4c1e-9d2a-5c7e8f1a2b3c", {"HTTP_AUTHORIZATION": "token abc"}, True),
    ("/user-logs", {"HTTP_AUTHORIZATION": "Token abc", "HTTP_ACCEPT": "application/json"}, True),
    ("/user-logs", {"HTTP_AUTHORIZATION": "Token abc", "HTTP_ACCEPT": "text/html,application/xhtml+xml"}, False),
    ("/user-logs", {}, False),  # a browser's session, or no credentials at all
    ("/user-logs", {"HTTP_AUTHORIZATION": "Bearer abc"}, False),
    ("/user-logs", {"HTTP_AUTHORIZATION": "Tokenabc"}, False),
    ("/api-auth/login/", {"HTTP_AUTHORIZATION": "Token abc"}, False),
    ("/static/rest_framework/css/bootstrap.min.css", {"HTTP_AUTHORIZATION": "Token abc"}, False),
    ("/api/schema/", {"HTTP_AUTHORIZATION": "Token abc"}, False),
])
def test_only_token_requests_to_the_api_that_accept_no_html_take_the_token_handler(path, headers, expected):
    from activity_service.wsgi import is_token_api_request

    assert is_token_api_request({"PATH_INFO": path, **headers}) is expected


def test_the_token_handler_leaves_out_exactly_the_browser_only_middleware():
    from django.conf import settings

    from activity_service.wsgi import browser_application, token_api_application

    def chain(handler):
        names, layer = [], handler._middleware_chain
        while hasattr(layer, "__wrapped__") or hasattr(layer, "get_response"):
            layer = getattr(layer, "__wrapped__", layer)
            if not hasattr(layer, "get_response"):
                break
            names.append(f"{type(layer).__module__}.{type(layer).__name__}")
            layer = layer.get_response
        return names

    assert chain(browser_application) == list(settings.MIDDLEWARE)
    assert chain(token_api_application) == [name for name in settings.MIDDLEWARE
                                            if name not in settings.BROWSER_ONLY_MIDDLEWARE]
    assert settings.BROWSER_ONLY_MIDDLEWARE < set(settings.MIDDLEWARE)


def answer(handler, request):
    started = []
    environ = dict(request.environ, **{"wsgi.input": io.BytesIO(b"")})
    body = handler(environ, lambda status, headers, exc_info=None: started.append((status, headers)))
    try:
        content = b"".join(body)
    finally:
        body.close()
    status, headers = started[0]
    return status, sorted(headers), content


def test_every_kind_of_token_request_is_answered_the_same_through_either_handler(api_collection, db):
    """Status, every header and the body, for answers of every kind: pages, a log, refusals, errors."""
    from activity_service.wsgi import browser_application, is_token_api_request, token_api_application
    from logs.api.accounts import issue_api_token

    logs = store(api_collection, [activity_event(user_id=f"user-{n % 2}", at=START + timedelta(seconds=n))
                                  for n in range(12)])
    everyone = issue_api_token(username="support", all_users=True).key
    own = issue_api_token(username="user-1").key
    requests = RequestFactory()
    cases = [
        ("GET", "/user-logs", everyone, {}),
        ("GET", "/user-logs?userId=user-1&action=send&limit=2", everyone, {}),
        ("GET", "/user-logs?limit=3&page=2", everyone, {"HTTP_ACCEPT": "application/json"}),
        ("GET", f"/user-logs?after={logs[5]['_id']}&limit=2", everyone, {}),
        ("GET", "/user-logs/", own, {}),
        ("GET", "/user-logs?userId=user-0", own, {}),  # another user's: 403
        ("GET", f"/user-logs/{logs[3]['_id']}", everyone, {}),
        ("GET", f"/user-logs/{logs[0]['_id']}", own, {}),  # another user's log: 404
        ("GET", "/user-logs/not-a-uuid", everyone, {}),
        ("GET", "/user-logs?limit=0&page=１", everyone, {}),
        ("GET", "/user-logs?userId[$ne]=x", everyone, {}),
        ("GET", "/user-logs?format=json", everyone, {}),
        ("GET", "/user-logs", everyone, {"HTTP_ACCEPT": "application/xml"}),  # 406
        ("GET", "/user-logs", "not-a-token", {}),
        ("GET", "/user-logs/a/b/c", everyone, {}),
        ("HEAD", "/user-logs", everyone, {}),
        ("OPTIONS", "/user-logs", everyone, {}),
        ("POST", "/user-logs", everyone, {}),
        ("DELETE", f"/user-logs/{logs[3]['_id']}", everyone, {}),
        ("GET", "/user-logs", everyone, {"HTTP_HOST": "evil.example"}),  # a disallowed Host
    ]
    statuses = set()
    for method, path, token, headers in cases:
        request = requests.generic(method, path, HTTP_AUTHORIZATION=f"Token {token}", **headers)
        assert is_token_api_request(request.environ), path
        through_token_handler = answer(token_api_application, request)
        assert through_token_handler == answer(browser_application, request), (method, path)
        statuses.add(through_token_handler[0][:3])
    assert statuses == {"200", "400", "401", "403", "404", "405", "406"}
