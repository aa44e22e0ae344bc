"""The metrics and probe port that the long-running commands (consumer, producer) share."""

from django.conf import settings
from django.core.management.base import CommandError

from logs.pipeline import metrics

from ._arguments import number


def add_metrics_port_argument(parser, *, default):
    parser.add_argument("--metrics-port", type=number(int, at_least=0, at_most=65535), default=default,
                        help=f"serve Prometheus metrics, /healthz and /readyz on this port, 0 for none "
                             f"(default {default})")


def serve_metrics_and_probes(port, *, role):
    """Start the server of `role` (metrics.CONSUMER or metrics.PRODUCER), or stop the command with one line
    that says what to do instead."""
    try:
        metrics.start_metrics_server(port=port, liveness_timeout=settings.LIVENESS_TIMEOUT_SECONDS, role=role)
    except OSError as exc:
        raise CommandError(f"cannot serve metrics on port {port} ({exc}); pass --metrics-port 0 "
                           "or another port") from None
