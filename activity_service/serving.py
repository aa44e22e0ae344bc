"""The gunicorn worker that serves the API: uvicorn as shipped, configured through uvicorn-worker's
documented `CONFIG_KWARGS` (docs/decisions/0017-edge-on-stock-parts.md). No protocol class of ours: the
limits uvicorn lacks are either the proxy's in front (deploy/nginx/) or the ASGI layers of asgi.py."""

from uvicorn_worker import UvicornWorker

from .settings.env import env_list


class ApiWorker(UvicornWorker):
    # lifespan off: Django has no ASGI lifespan handlers; no Server header: it names the software to attackers;
    # X-Forwarded-For is read only when API_TRUSTED_PROXIES names the proxies that may send it.
    CONFIG_KWARGS = {"loop": "auto", "http": "auto", "lifespan": "off", "server_header": False,
                     "proxy_headers": bool(env_list("API_TRUSTED_PROXIES", []))}
