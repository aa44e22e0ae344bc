"""Django's WSGI application under an ASGI server, with one hand-off between threads per request.

The request is read whole on the event loop (a slow body holds a socket, never a thread; a body over
`max_body_bytes` is refused with 413 before Django sees it), then Django runs in a thread of a bounded
pool, and its finished answer is given back to the loop once. A generic ASGI-to-WSGI adapter instead
hands each part of an answer to the loop and waits for it there (the status line, each body chunk, the
end): three round trips between a Django thread and the loop for every API answer
(docs/decisions/0005-serving-model.md). An answer longer than STREAM_AFTER_BYTES (a static asset) is streamed chunk by
chunk instead. The WSGI environ is built from the ASGI scope as the two public specifications define it
(PEP 3333, the ASGI HTTP connection scope), so nothing here depends on a server's or adapter's internals.

The moment a request reached the loop is `environ[ARRIVED]` (`time.monotonic()`), so its database
deadline also counts the time it waited for a thread (`logs.api.deadlines`).
"""

import asyncio
import contextvars
import io
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from logs.api.deadlines import ARRIVED

from .refusals import refuse

STREAM_AFTER_BYTES = 256 * 1024


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


def wsgi_environ(scope, body):
    """The WSGI environ of an ASGI HTTP request whose whole body is `body` (PEP 3333 from the ASGI scope)."""
    root_path = scope.get("root_path", "")
    path = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path):]
    server_host, server_port = scope.get("server") or ("localhost", 80)
    environ = {
        "REQUEST_METHOD": scope["method"],
        # WSGI carries paths as latin-1 strings of the UTF-8 bytes (PEP 3333 "unicode issues").
        "SCRIPT_NAME": root_path.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": server_host,
        "SERVER_PORT": str(server_port or 0),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"
        value = raw_value.decode("latin-1")
        # A repeated header is one comma-separated value in CGI and WSGI.
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


async def read_body(scope, receive, *, limit):
    """The request's whole body from ASGI `http.request` messages; BodyTooLarge once it announces or
    reaches more than `limit` bytes."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise BodyTooLarge()
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise BodyTooLarge()
        parts.append(part)
        if not message.get("more_body", False):
            return b"".join(parts)


class ThreadedWSGI:
    """An ASGI application running `wsgi_application` in a pool of at most `threads` threads."""

    def __init__(self, wsgi_application, *, threads, max_body_bytes):
        self.wsgi_application = wsgi_application
        self.max_body_bytes = max_body_bytes
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="django")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return  # no websockets; lifespan is off in the server's configuration
        arrived = time.monotonic()
        try:
            body = await read_body(scope, receive, limit=self.max_body_bytes)
        except BodyTooLarge:
            await refuse(send, 413, f"The request body exceeds {self.max_body_bytes} bytes.")
            return
        except ClientGone:
            return
        environ = wsgi_environ(scope, body)
        environ[ARRIVED] = arrived
        loop = asyncio.get_running_loop()
        answer = await self.in_thread(loop, contextvars.copy_context().run, self.respond, environ, loop, send)
        if answer is not None:
            start, body = answer
            await send(start)
            await send({"type": "http.response.body", "body": body})

    def in_thread(self, loop, function, *args):
        """A future of `loop` for `function(*args)` run in a pool thread, settled by one call into the loop.

        `loop.run_in_executor` does the same through a concurrent future chained to an asyncio one, several
        callbacks and state copies on the loop per request. A call whose future was cancelled before a thread
        took it up (the server shutting down) is not run, as the executor would not run it either.
        """
        future = loop.create_future()

        def run():
            if future.cancelled():
                return
            try:
                result = function(*args)
            except BaseException as exc:  # as run_in_executor, every exception goes to the awaiting task
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

        self.executor.submit(run)
        return future

    def respond(self, environ, loop, send):
        """Runs in a pool thread: Django's whole answer as (start message, body), or None once it has been
        streamed to `send` because it was longer than STREAM_AFTER_BYTES."""
        started = []

        def start_response(status, headers, exc_info=None):
            started[:] = [{"type": "http.response.start", "status": int(status.split(" ", 1)[0]),
                           "headers": [(name.lower().encode("latin-1"), value.encode("latin-1"))
                                       for name, value in headers]}]
            return chunks.append  # WSGI's legacy write(); Django never calls it

        def send_from_thread(message):
            asyncio.run_coroutine_threadsafe(send(message), loop).result()

        chunks, size, streaming = [], 0, False
        iterable = self.wsgi_application(environ, start_response)
        try:
            for chunk in iterable:
                chunks.append(chunk)
                size += len(chunk)
                if size > STREAM_AFTER_BYTES:
                    if not streaming:
                        streaming = True
                        send_from_thread(started[0])
                    send_from_thread({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})
                    chunks, size = [], 0
        finally:
            getattr(iterable, "close", lambda: None)()
        if streaming:
            send_from_thread({"type": "http.response.body", "body": b"".join(chunks)})
            return None
        return started[0], b"".join(chunks)


def _settle(future, result, exc):
    """On the loop: the pool thread's outcome into its future, unless the awaiting task gave up on it."""
    if future.cancelled():
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)
