"""Django's WSGI application under the ASGI server, with one hand-off between threads per request.

a2wsgi's `WSGIMiddleware` passes each part of an answer back to the event loop and waits for it there
(the status line, each body chunk, the end): three round trips between a Django thread and the loop
for every API answer, a large part of the API's own cost per request (docs/decisions/0005-serving-model.md). An API
answer is a small JSON body that Django has finished before returning it, so `ThreadedWSGI` runs the
whole request in a thread, collects the answer there, and gives it to the loop once. An answer longer
than STREAM_AFTER_BYTES (a static asset) is streamed chunk by chunk instead, as a2wsgi streams.
a2wsgi's environ builder and request-body reader are used unchanged.

The moment a request reached the loop is `environ[ARRIVED]` (`time.monotonic()`), so its database
deadline also counts the time it waited for a thread (`logs.api.deadlines`).
"""

import asyncio
import contextvars
import time
from concurrent.futures import ThreadPoolExecutor

from a2wsgi.wsgi import Body, build_environ

from logs.api.deadlines import ARRIVED

STREAM_AFTER_BYTES = 256 * 1024


class ThreadedWSGI:
    """An ASGI application running `wsgi_application` in a pool of at most `threads` threads."""

    def __init__(self, wsgi_application, *, threads):
        self.wsgi_application = wsgi_application
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="django")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return  # no websockets; lifespan is off in the server's configuration
        loop = asyncio.get_running_loop()
        environ = build_environ(scope, Body(loop, receive))
        environ[ARRIVED] = time.monotonic()
        answer = await loop.run_in_executor(self.executor, contextvars.copy_context().run,
                                            self.respond, environ, loop, send)
        if answer is not None:
            start, body = answer
            await send(start)
            await send({"type": "http.response.body", "body": body})

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
