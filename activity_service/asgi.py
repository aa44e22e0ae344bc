"""ASGI entry point for the production server (gunicorn with stock uvicorn workers, see gunicorn.conf.py).

The event loop owns the connections; Django runs as its WSGI application in a bounded pool of threads
(`threaded_wsgi`), so a slow client costs a socket, not a thread. In front of Django, on the loop:
- the probe port (API_PROBE_PORT) answers /healthz and /readyz only, and no client address is limited
  there, so kubelet's probes never queue behind a client that floods the public port;
- `/healthz` is answered on the loop, before Django: it must answer in milliseconds even when every
  thread waits on the database. Every other request, `/healthz` with another method included, goes on;
- a request line or head over the limits is refused in JSON (414, 431), as nginx refuses it in front;
- on the public port each client address gets its share (`fairness.ClientShare`).
"""

import gc
import json
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "activity_service.settings")

from django.conf import settings  # noqa: E402
from django.urls import get_resolver  # noqa: E402
from rest_framework.settings import api_settings  # noqa: E402

# The WSGI entry also refuses to serve a collection still in the previous layout (logs/storage/layout.py).
from .fairness import ClientShare  # noqa: E402
from .refusals import refuse, send_json  # noqa: E402
from .threaded_wsgi import ThreadedWSGI  # noqa: E402
from .wsgi import application as wsgi_application  # noqa: E402

# Read once: every request on the loop checks them, and a setting read through Django's lazy settings costs
# a Python call or two each time.
MAX_REQUEST_LINE_BYTES = settings.API_MAX_REQUEST_LINE_BYTES
MAX_HEADER_COUNT = settings.API_MAX_HEADER_COUNT
MAX_REQUEST_HEAD_BYTES = settings.API_MAX_REQUEST_HEAD_BYTES
PROBE_PORT = settings.API_PROBE_PORT

LIVENESS_PATH = "/healthz"
PROBE_PATHS = {LIVENESS_PATH, "/readyz"}
LIVENESS_BODY = json.dumps({"status": "ok"}).encode()

django_application = ThreadedWSGI(wsgi_application, threads=settings.API_WORKER_THREADS,
                                  max_body_bytes=settings.API_MAX_BODY_BYTES)
public_application = ClientShare(django_application, max_in_flight=settings.API_CLIENT_MAX_REQUESTS,
                                 rate=settings.API_CLIENT_RATE_PER_SECOND, burst=settings.API_CLIENT_BURST)

# A worker's first request would otherwise import the URL map's views and DRF's configured classes while
# its deadline runs (seconds on a busy machine): done here, before the worker accepts connections.
get_resolver().resolve("/user-logs")
for setting in ("DEFAULT_AUTHENTICATION_CLASSES", "DEFAULT_PERMISSION_CLASSES", "DEFAULT_THROTTLE_CLASSES",
                "DEFAULT_RENDERER_CLASSES", "DEFAULT_PARSER_CLASSES", "DEFAULT_CONTENT_NEGOTIATION_CLASS"):
    getattr(api_settings, setting)

# Everything loaded so far (Django, the apps, the URL map: tens of thousands of objects) lives as long as
# the worker. Left to the cyclic collector, each full collection walks all of it while holding the GIL,
# and meanwhile the event loop answers nothing, /healthz included.
gc.freeze()


def head_refusal(scope):
    """(status, detail) for a request line or head over the limits, else None."""
    line = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
    if line > MAX_REQUEST_LINE_BYTES:
        return 414, f"The request target exceeds {MAX_REQUEST_LINE_BYTES} bytes."
    headers = scope.get("headers", ())
    if len(headers) > MAX_HEADER_COUNT:
        return 431, f"More than {MAX_HEADER_COUNT} headers."
    if line + sum(len(name) + len(value) + 4 for name, value in headers) > MAX_REQUEST_HEAD_BYTES:
        return 431, f"The request line and headers exceed {MAX_REQUEST_HEAD_BYTES} bytes."
    return None


async def application(scope, receive, send):
    if scope["type"] != "http":
        return  # no websockets; lifespan is off in the server's configuration
    refusal = head_refusal(scope)
    if refusal:
        await refuse(send, *refusal)
        return
    on_probe_port = PROBE_PORT and (scope.get("server") or (None, None))[1] == PROBE_PORT
    if scope["path"] == LIVENESS_PATH and scope["method"] in {"GET", "HEAD"}:
        await send_json(send, 200, LIVENESS_BODY, with_body=scope["method"] == "GET")
    elif on_probe_port:
        if scope["path"] in PROBE_PATHS:
            await django_application(scope, receive, send)
        else:
            await refuse(send, 404, "The probe port serves /healthz and /readyz only.")
    else:
        await public_application(scope, receive, send)
