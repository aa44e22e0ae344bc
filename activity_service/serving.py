"""The production HTTP edge: gunicorn's process manager with uvicorn workers, plus the limits uvicorn lacks.

Each uvicorn worker reads requests on an event loop, so a client that sends its request slowly holds a
socket, not a worker or a thread (issue #12: two such clients stopped the sync workers). uvicorn has a
keep-alive timeout but no deadline for the request head or body and no cap on the head's size, header
count or connections per worker; `EdgeLimitedProtocol` adds exactly those to uvicorn's httptools
protocol. Refusals are small JSON answers carrying the same security headers as Django's responses.
"""

import functools
import json
from http import HTTPStatus

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from .settings.env import env_int

# The whole request line and headers must arrive within this many seconds of the first byte (or of the
# connection, for a client that sends nothing); the body within this many seconds of the head.
HEADER_TIMEOUT_SECONDS = env_int("API_HEADER_TIMEOUT_SECONDS", 10, minimum=1)
BODY_TIMEOUT_SECONDS = env_int("API_BODY_TIMEOUT_SECONDS", 10, minimum=1)
# Request line and headers together; what a browser with a few cookies sends fits in a quarter of it.
MAX_REQUEST_HEAD_BYTES = env_int("API_MAX_REQUEST_HEAD_BYTES", 16384, minimum=1024)
# Django requests one worker runs at once; more wait on the event loop. The threads share one GIL with the
# loop that answers /healthz: fewer threads kept its p99 under load low at the same throughput
# (`make bench-load`, docs/decisions/0005-serving-model.md). A request's database deadline
# counts its wait for a thread, so during an outage a queued request still gets its 503 within the deadline.
WORKER_THREADS = env_int("API_WORKER_THREADS", 16, minimum=1)


@functools.cache
def security_headers():
    """The headers Django's SecurityMiddleware and XFrameOptionsMiddleware put on every response,
    for the answers given before Django sees the request (over HTTP, so without HSTS)."""
    from django.conf import settings

    headers = {
        "X-Frame-Options": settings.X_FRAME_OPTIONS,
        "Referrer-Policy": settings.SECURE_REFERRER_POLICY,
        "Cross-Origin-Opener-Policy": settings.SECURE_CROSS_ORIGIN_OPENER_POLICY,
    }
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers["X-Content-Type-Options"] = "nosniff"
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def json_headers(body):
    """The headers of a JSON answer given without Django, as ASGI (name, value) byte pairs."""
    return [*security_headers(), (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii"))]


class EdgeLimitedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with head and body deadlines, head size and header count caps, and a
    cap on open connections per worker (the gunicorn settings `limit_request_line`,
    `limit_request_fields` and `worker_connections`, which uvicorn's worker does not apply)."""

    limit_request_line = 4094
    limit_request_fields = 100
    worker_connections = 1000

    def connection_made(self, transport):
        self._deadline = None
        self._reading_head = True
        self._head_bytes = 0  # received while reading the head: bounds what the parser buffers
        self._head_size = 0  # parsed request line and headers
        self._header_count = 0
        self._refusal = None
        over_capacity = len(self.connections) >= self.worker_connections
        super().connection_made(transport)
        if over_capacity:
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "The server has too many open connections; try again shortly.")
            return
        self._arm_deadline(HEADER_TIMEOUT_SECONDS, self._head_timed_out)

    def connection_lost(self, exc):
        self._disarm_deadline()
        super().connection_lost(exc)

    def data_received(self, data):
        if self._reading_head:
            if self._deadline is None:
                self._arm_deadline(HEADER_TIMEOUT_SECONDS, self._head_timed_out)
            self._head_bytes += len(data)
        super().data_received(data)
        if self._reading_head and self._head_bytes > MAX_REQUEST_HEAD_BYTES and not self.transport.is_closing():
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                         f"The request line and headers exceed {MAX_REQUEST_HEAD_BYTES} bytes.")

    def on_url(self, url):
        super().on_url(url)
        self._head_size += len(url)
        if len(self.url) > self.limit_request_line:
            self._refuse_while_parsing(HTTPStatus.REQUEST_URI_TOO_LONG,
                                       f"The request line exceeds {self.limit_request_line} bytes.")

    def on_header(self, name, value):
        self._header_count += 1
        self._head_size += len(name) + len(value) + 4
        if self._header_count > self.limit_request_fields:
            self._refuse_while_parsing(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                                       f"More than {self.limit_request_fields} headers.")
        if self._head_size > MAX_REQUEST_HEAD_BYTES:
            self._refuse_while_parsing(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                                       f"The request line and headers exceed {MAX_REQUEST_HEAD_BYTES} bytes.")
        super().on_header(name, value)

    def on_headers_complete(self):
        self._reading_head = False
        self._arm_deadline(BODY_TIMEOUT_SECONDS, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self):
        self._disarm_deadline()
        self._reading_head = True
        self._head_bytes = self._head_size = self._header_count = 0
        super().on_message_complete()

    def send_400_response(self, msg):
        """uvicorn calls this for any request it cannot parse; answer in JSON with the security headers."""
        status, detail = self._refusal or (HTTPStatus.BAD_REQUEST, "Invalid HTTP request.")
        self._refuse(status, detail)

    def _refuse_while_parsing(self, status, detail):
        """Stop the parser from a callback: httptools turns the exception into the parse error uvicorn
        answers through `send_400_response`, which sends this refusal instead."""
        self._refusal = (status, detail)
        raise ValueError(detail)

    def _refuse(self, status, detail):
        self._disarm_deadline()
        body = json.dumps({"detail": detail}).encode()
        lines = [f"HTTP/1.1 {status.value} {status.phrase}".encode("ascii")]
        lines += [name + b": " + value for name, value in (*json_headers(body), (b"connection", b"close"))]
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        self.transport.close()

    def _head_timed_out(self):
        self._deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a pipelined head timed out while an answer is being written
        elif not self.transport.is_closing():
            self._refuse(HTTPStatus.REQUEST_TIMEOUT,
                         f"The request headers did not arrive within {HEADER_TIMEOUT_SECONDS} s.")

    def _body_timed_out(self):
        """The application is already reading the body: closing tells it the client is gone."""
        self._deadline = None
        self.transport.close()

    def _arm_deadline(self, seconds, callback):
        self._disarm_deadline()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm_deadline(self):
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


class EdgeLimitedUvicornWorker(UvicornWorker):
    """uvicorn-worker's gunicorn worker with `EdgeLimitedProtocol` and the edge limits from gunicorn's config."""

    CONFIG_KWARGS = {"loop": "auto", "lifespan": "off", "server_header": False}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.http = type("ConfiguredEdgeLimitedProtocol", (EdgeLimitedProtocol,), {
            "limit_request_line": self.cfg.limit_request_line,
            "limit_request_fields": self.cfg.limit_request_fields,
            "worker_connections": self.cfg.worker_connections,
        })
