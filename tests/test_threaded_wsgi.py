"""activity_service.threaded_wsgi: a WSGI application under ASGI with one hand-off per answer.

These drive the adapter directly on an event loop with small WSGI applications; tests/test_serving.py
runs it inside the production server.
"""

import asyncio
import threading
import time

import pytest

from activity_service.threaded_wsgi import STREAM_AFTER_BYTES, ThreadedWSGI
from logs.api.deadlines import ARRIVED


def scope(method="GET", path="/x", headers=()):
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"a=1", "root_path": "",
            "headers": list(headers), "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}


def serve(application, request_scope, body=b""):
    """The messages `application` sends for one request whose body arrives in two parts."""
    sent, parts = [], [body[:len(body) // 2], body[len(body) // 2:]]

    async def receive():
        return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}

    async def send(message):
        sent.append(message)

    asyncio.run(application(request_scope, receive, send))
    return sent


class Recorder:
    """A WSGI application answering `chunks`, remembering its environ, thread and whether it was closed."""

    def __init__(self, chunks, status="201 Created"):
        self.chunks, self.status, self.closed, self.environ, self.thread = chunks, status, False, None, None

    def __call__(self, environ, start_response):
        self.environ, self.thread = environ, threading.current_thread()
        self.received = environ["wsgi.input"].read()
        start_response(self.status, [("Content-Type", "application/json"), ("X-Trace", "abc")])
        return self

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        self.closed = True


def test_a_short_answer_reaches_the_loop_once_as_start_and_whole_body():
    app = Recorder([b'{"a":', b" 1}"])
    before = time.monotonic()
    sent = serve(ThreadedWSGI(app, threads=2, max_body_bytes=1 << 20), scope())
    assert sent == [{"type": "http.response.start", "status": 201,
                     "headers": [(b"content-type", b"application/json"), (b"x-trace", b"abc")]},
                    {"type": "http.response.body", "body": b'{"a": 1}'}]
    assert app.closed and app.thread is not threading.main_thread() and app.thread.name.startswith("django")
    assert before <= app.environ[ARRIVED] <= time.monotonic()
    environ = app.environ
    assert (environ["PATH_INFO"], environ["QUERY_STRING"], environ["REMOTE_ADDR"]) == ("/x", "a=1", "127.0.0.1")


def test_a_long_answer_is_streamed_in_order_and_whole():
    chunks = [bytes([n]) * (STREAM_AFTER_BYTES // 3) for n in range(10)]
    app = Recorder(chunks, status="200 OK")
    sent = serve(ThreadedWSGI(app, threads=2, max_body_bytes=1 << 20), scope())
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    bodies = sent[1:]
    assert len(bodies) > 2
    assert all(message["more_body"] for message in bodies[:-1]) and not bodies[-1].get("more_body", False)
    assert b"".join(message["body"] for message in bodies) == b"".join(chunks)
    assert app.closed


def test_the_request_body_is_read_from_the_loop_in_its_parts():
    app = Recorder([b"ok"])
    body = b"username=someone&password=" + b"x" * 5000
    request = scope("POST", headers=[(b"content-length", str(len(body)).encode())])
    serve(ThreadedWSGI(app, threads=1, max_body_bytes=1 << 20), request, body)
    assert app.received == body


@pytest.mark.parametrize("announced", [True, False])
def test_a_body_over_the_limit_is_a_json_413_and_never_reaches_the_application(announced):
    app = Recorder([b"ok"])
    body = b"x" * 5000
    headers = [(b"content-length", b"5000")] if announced else []
    sent = serve(ThreadedWSGI(app, threads=1, max_body_bytes=4096), scope("POST", headers=headers), body)
    assert sent[0]["status"] == 413 and (b"content-type", b"application/json") in sent[0]["headers"]
    assert b"4096" in sent[1]["body"] and app.environ is None


def test_the_environ_follows_pep_3333_for_paths_repeated_headers_and_the_client():
    app = Recorder([b"ok"])
    headers = [(b"x-trace", b"a"), (b"x-trace", b"b"), (b"content-type", b"text/plain"), (b"content-length", b"0")]
    request = {**scope(path="/caf\u00e9", headers=headers), "root_path": "", "client": ("10.1.2.3", 4567)}
    serve(ThreadedWSGI(app, threads=1, max_body_bytes=1024), request)
    environ = app.environ
    assert environ["PATH_INFO"] == "/caf\u00e9".encode().decode("latin-1")
    assert (environ["HTTP_X_TRACE"], environ["CONTENT_TYPE"], environ["CONTENT_LENGTH"]) == ("a,b", "text/plain", "0")
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"], environ["SERVER_PORT"]) == ("10.1.2.3", "4567", "8000")
    assert environ["wsgi.url_scheme"] == "http" and environ["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_an_application_error_reaches_the_server_and_the_answer_is_closed():
    class Failing(Recorder):
        def __iter__(self):
            raise RuntimeError("boom")

    app = Failing([])
    with pytest.raises(RuntimeError, match="boom"):
        serve(ThreadedWSGI(app, threads=1, max_body_bytes=1 << 20), scope())
    assert app.closed


def test_requests_beyond_the_pool_wait_for_a_thread_and_their_arrival_is_kept():
    """Two requests on a one-thread pool: the second starts only when the first is done, and its ARRIVED
    is its arrival on the loop, not the moment a thread took it."""
    release, started = threading.Event(), []

    def app(environ, start_response):
        started.append((environ["PATH_INFO"], environ[ARRIVED], time.monotonic()))
        if environ["PATH_INFO"] == "/first":
            assert release.wait(10)
        start_response("200 OK", [])
        return [b""]

    adapter = ThreadedWSGI(app, threads=1, max_body_bytes=1 << 20)

    async def both():
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            pass

        first = asyncio.ensure_future(adapter(scope(path="/first"), receive, send))
        second = asyncio.ensure_future(adapter(scope(path="/second"), receive, send))
        # Not a wait for something to happen: the second request must *not* start while the first holds the
        # one thread, and no event says "not yet"; 0.3 s is the time it is given to go wrong.
        await asyncio.sleep(0.3)
        assert [path for path, _, _ in started] == ["/first"]
        release.set()
        await asyncio.gather(first, second)

    asyncio.run(both())
    (_, _, _), (path, arrived, began) = started
    assert path == "/second" and began - arrived >= 0.25


def test_a_call_in_a_pool_thread_settles_its_future_once_and_a_call_cancelled_while_queued_never_runs():
    """`ThreadedWSGI.in_thread`, which stands in for `loop.run_in_executor`: the result or the exception reaches the
    awaiting task, and a call given up before a thread took it does not run (the executor's own rule)."""

    async def scenario():
        app = ThreadedWSGI(lambda environ, start_response: [], threads=1, max_body_bytes=10)
        loop = asyncio.get_running_loop()
        assert await app.in_thread(loop, lambda number: number * 2, 21) == 42
        with pytest.raises(ZeroDivisionError):
            await app.in_thread(loop, lambda: 1 / 0)
        gate, ran = threading.Event(), []
        first = app.in_thread(loop, gate.wait, 10)  # holds the only thread
        second = app.in_thread(loop, ran.append, "second")
        second.cancel()
        gate.set()
        assert await first is True
        assert await app.in_thread(loop, ran.append, "third") is None  # one thread: after the second's turn
        assert ran == ["third"] and second.cancelled()
        app.executor.shutdown()

    asyncio.run(scenario())
