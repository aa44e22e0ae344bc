"""Answers given before Django sees a request: small JSON bodies with the security headers Django's answers carry."""

import functools
import json
from http import HTTPStatus


@functools.cache
def security_headers():
    """The headers Django's SecurityMiddleware and XFrameOptionsMiddleware put on every response, as ASGI
    (name, value) byte pairs, for the answers given before Django sees the request (without HSTS: these
    may leave over plain HTTP)."""
    from django.conf import settings

    headers = {
        "X-Frame-Options": settings.X_FRAME_OPTIONS,
        "Referrer-Policy": settings.SECURE_REFERRER_POLICY,
        "Cross-Origin-Opener-Policy": settings.SECURE_CROSS_ORIGIN_OPENER_POLICY,
    }
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers["X-Content-Type-Options"] = "nosniff"
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def json_headers(body, *extra):
    """The headers of a JSON answer given without Django."""
    return [*security_headers(), (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii")), *extra]


async def send_json(send, status, body, *extra_headers, with_body=True):
    await send({"type": "http.response.start", "status": status, "headers": json_headers(body, *extra_headers)})
    await send({"type": "http.response.body", "body": body if with_body else b""})


async def refuse(send, status, detail, *, retry_after=None):
    """A refusal as the API words its errors: `{"detail": ...}`; `retry_after` seconds become Retry-After."""
    extra = [(b"retry-after", str(retry_after).encode("ascii"))] if retry_after is not None else []
    body = json.dumps({"detail": detail}).encode()
    await send_json(send, HTTPStatus(status).value, body, *extra)
