"""ASGI entry point for the production server (gunicorn with uvicorn workers, see serving.py).

The event loop owns the connections; Django runs as its WSGI application in a bounded pool of
threads (`threaded_wsgi`), so a slow client costs a socket, not a thread, and the threads compete for
the GIL no more than the pool allows. Django's own ASGI handler was measured slower here: it starts a
thread per request (docs/decisions/0005-serving-model.md).

Liveness is answered on the event loop, before Django: `/healthz` must answer in milliseconds even when
every thread waits on the database. Every other request, `/healthz` with another method included, goes
to Django.
"""

import gc
import json
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "activity_service.settings")

# The WSGI entry also refuses to serve a collection still in the previous layout (logs/storage/layout.py).
from .serving import WORKER_THREADS, json_headers  # noqa: E402  (reads Django settings, configured above)
from .threaded_wsgi import ThreadedWSGI  # noqa: E402
from .wsgi import application as wsgi_application  # noqa: E402

django_application = ThreadedWSGI(wsgi_application, threads=WORKER_THREADS)

# Everything loaded so far (Django, the apps, the URL map: tens of thousands of objects) lives as long as
# the worker. Left to the cyclic collector, each full collection walks all of it while holding the GIL,
# and meanwhile the event loop answers nothing, /healthz included.
gc.freeze()

LIVENESS_PATH = "/healthz"
LIVENESS_BODY = json.dumps({"status": "ok"}).encode()


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == LIVENESS_PATH and scope["method"] in {"GET", "HEAD"}:
        await send_json(send, LIVENESS_BODY, with_body=scope["method"] == "GET")
        return
    await django_application(scope, receive, send)


async def send_json(send, body, *, with_body):
    await send({"type": "http.response.start", "status": 200, "headers": json_headers(body)})
    await send({"type": "http.response.body", "body": body if with_body else b""})
