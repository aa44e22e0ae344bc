"""Gunicorn settings for the API, from the environment (gunicorn loads ./gunicorn.conf.py itself).

gunicorn manages the processes; each worker is uvicorn as shipped serving `activity_service.asgi` on an
event loop (docs/decisions/0017-edge-on-stock-parts.md). PORT is what PaaS platforms set; GUNICORN_BIND overrides
the whole public address. The probe port (API_PROBE_PORT) is a second listening socket of the same workers:
kubelet's probes queue there, never behind the public port's clients. Each worker is its own process, so
Prometheus metrics are kept in PROMETHEUS_MULTIPROC_DIR and the master adds them up on API_METRICS_PORT,
away from the public port.
"""

import os
import shutil
import sys
import tempfile

from activity_service.settings.env import env_int, env_list, env_str

public_bind = env_str("GUNICORN_BIND", f"0.0.0.0:{env_int('PORT', 8000, minimum=1)}")
probe_port = env_int("API_PROBE_PORT", 8081, minimum=0)
bind = [public_bind, f"{public_bind.rsplit(':', 1)[0]}:{probe_port}"] if probe_port else [public_bind]
workers = env_int("GUNICORN_WORKERS", 2, minimum=1)
worker_class = "activity_service.serving.ApiWorker"
# With uvicorn workers this is the event loop's heartbeat, not a request deadline (requests have the
# database deadline of settings.pipeline): only a worker whose loop is stuck is restarted.
timeout = env_int("GUNICORN_TIMEOUT", 30, minimum=1)
keepalive = env_int("API_KEEPALIVE_TIMEOUT_SECONDS", 5, minimum=1)
# uvicorn replaces the connection's address by the client named in X-Forwarded-For (and the scheme by
# X-Forwarded-Proto) only for connections from these proxies (serving.py turns that off when there are none).
forwarded_allow_ips = ",".join(env_list("API_TRUSTED_PROXIES", []))
metrics_port = env_int("API_METRICS_PORT", 9102, minimum=0)
# Workers heartbeat through a file; memory-backed /dev/shm keeps that off a slow or read-only disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Requests are counted by /metrics and errors logged by Django; an access log line per request
# is opt-in (GUNICORN_ACCESS_LOG=-) for platforms that want it.
accesslog = env_str("GUNICORN_ACCESS_LOG", None)
errorlog = "-"
# No runtime control socket: nothing in a container uses gunicornc, and the filesystem may be read-only.
control_socket_disable = True
if env_str("LOG_FORMAT", "plain") == "json":
    logconfig_dict = {
        "formatters": {"json": {"()": "activity_service.log_formats.JsonFormatter"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
            "error_console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
        },
        # Gunicorn's defaults also let these propagate to the root handler, which would print each line twice.
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"] if accesslog else [], "propagate": False},
        },
    }


def on_starting(server):
    """Refuse a published or weak secret key; give this master a clean metrics folder before any worker writes to it."""
    refuse_insecure_secret_key()
    folder = env_str("PROMETHEUS_MULTIPROC_DIR", "")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gunicorn-prometheus-")


def refuse_insecure_secret_key():
    """Django's own deployment rule for SECRET_KEY (50+ characters, not `django-insecure-`), enforced at
    start, so no deployment serves with the development key this repository publishes. DEBUG exempts."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "activity_service.settings")
    from django.conf import settings
    from django.core.checks.security.base import check_secret_key

    if not settings.DEBUG and check_secret_key(None):
        sys.exit("Refusing to start: DJANGO_SECRET_KEY is unset, the published development key, or weak; set a random "
                 "value of 50+ characters (python -c 'import secrets; print(secrets.token_urlsafe(50))').")


def when_ready(server):
    """Serve every worker's metrics, added up, from the master on their own port (0: no metrics server)."""
    # Imported here, after on_starting set PROMETHEUS_MULTIPROC_DIR: prometheus_client picks its
    # multiprocess value class at import, and the workers forked later inherit the module.
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    if metrics_port:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        server.metrics_http_server, _ = start_http_server(metrics_port, registry=registry)


def post_fork(server, worker):
    """A worker inherits the master's metrics socket; closing its copy keeps the port the master's alone."""
    metrics_http_server = getattr(server, "metrics_http_server", None)
    if metrics_http_server is not None:
        metrics_http_server.socket.close()


def child_exit(server, worker):
    """A dead worker's live gauges must not be reported any more (its counters are kept)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
