"""GET requests to the servers under test; HTTP error statuses are answers here, not exceptions."""

import json
import urllib.error
import urllib.request


def http_response(url, *, headers=None, timeout=10):
    """(status, response headers, body bytes) for a GET."""
    request = urllib.request.Request(url, headers={"Host": "localhost", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def http_get(url, *, headers=None):
    """(status, body text) for a GET."""
    status, _, body = http_response(url, headers=headers)
    return status, body.decode()


def http_json(url, *, headers=None, timeout=10):
    """(status, parsed JSON or text, response headers) for a GET."""
    status, response_headers, body = http_response(url, headers=headers, timeout=timeout)
    kind = response_headers.get("Content-Type", "")
    return status, json.loads(body) if "json" in kind else body.decode(), response_headers
