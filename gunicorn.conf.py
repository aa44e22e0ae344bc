"""Gunicorn settings for the API, from the environment (gunicorn loads ./gunicorn.conf.py itself).

PORT is what PaaS platforms set; GUNICORN_BIND overrides the whole address. Each worker is its own
process, so Prometheus metrics are kept in PROMETHEUS_MULTIPROC_DIR and django-prometheus's /metrics
adds them up across workers; without that a scrape would see one random worker's counts.
"""

import os
import shutil
import tempfile

from activity_service.settings.env import env_int, env_str

bind = env_str("GUNICORN_BIND", f"0.0.0.0:{env_int('PORT', 8000, minimum=1)}")
workers = env_int("GUNICORN_WORKERS", 2, minimum=1)
threads = env_int("GUNICORN_THREADS", 1, minimum=1)
timeout = env_int("GUNICORN_TIMEOUT", 30, minimum=1)
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
    """Give this master a clean multiprocess metrics folder before any worker writes to it."""
    folder = env_str("PROMETHEUS_MULTIPROC_DIR", "")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gunicorn-prometheus-")


def child_exit(server, worker):
    """A dead worker's live gauges must not be reported any more (its counters are kept)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
