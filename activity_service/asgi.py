"""ASGI entry point for the production server (gunicorn with uvicorn workers, see serving.py).

Liveness is answered here, on the worker's event loop, before Django: Django runs each request's
synchronous code in a thread, and `/healthz` must answer in milliseconds even when every such thread
waits on the database. Every other request, `/healthz` with another method included, goes to Django.
"""

import json
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "activity_service.settings")

django_application = get_asgi_application()

from .serving import json_headers  # noqa: E402  (reads Django settings, configured just above)

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
