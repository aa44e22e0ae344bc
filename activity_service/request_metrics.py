"""The API's request metrics for Prometheus: the series docs/operations.md lists, and no others.

The names, labels and latency buckets are django-prometheus's, which served them before, so the alerts
(deploy/prometheus/alerts.yml) and the dashboard read them unchanged. django-prometheus's two middleware
also kept about ten series per request that nothing reads (by transport, body sizes, charsets, ...),
each update a label lookup under a lock and, in gunicorn's multiprocess mode, a write to a shared file:
a sizeable part of what an API answer cost. Here one middleware keeps five, and each label set's child
is looked up once per process.
"""

import time

from prometheus_client import Counter, Histogram

# django-prometheus's default buckets, which the dashboard's latency quantiles were read from.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 25.0, 50.0, 75.0,
                   float("inf"))
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH"))
UNNAMED_VIEW = "<unnamed view>"

REQUESTS_BY_METHOD = Counter("django_http_requests_total_by_method", "Count of requests by method.", ["method"])
RESPONSES_BY_STATUS = Counter("django_http_responses_total_by_status", "Count of responses by status.", ["status"])
RESPONSES_BY_STATUS_VIEW_METHOD = Counter("django_http_responses_total_by_status_view_method",
                                          "Count of responses by status, view, method.", ["status", "view", "method"])
LATENCY_BY_VIEW_METHOD = Histogram("django_http_requests_latency_seconds_by_view_method",
                                   "Histogram of request processing time labelled by view.", ["view", "method"],
                                   buckets=LATENCY_BUCKETS)
EXCEPTIONS_BY_TYPE = Counter("django_http_exceptions_total_by_type", "Count of exceptions by object type.", ["type"])


class Children(dict):
    """`metric.labels(*values)` per label values, looked up once: prometheus_client checks and locks on each call."""

    def __init__(self, metric):
        super().__init__()
        self.metric = metric

    def __missing__(self, values):
        child = self[values] = self.metric.labels(*values)
        return child


class RequestMetricsMiddleware:
    """Counts every answer Django gives by status, view and method, and times it; first in MIDDLEWARE, so the
    time includes every other middleware. A method outside HTTP's is `<invalid method>`, as before, so a
    client cannot create series at will."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.requests = Children(REQUESTS_BY_METHOD)
        self.statuses = Children(RESPONSES_BY_STATUS)
        self.responses = Children(RESPONSES_BY_STATUS_VIEW_METHOD)
        self.latencies = Children(LATENCY_BY_VIEW_METHOD)
        self.exceptions = Children(EXCEPTIONS_BY_TYPE)

    def __call__(self, request):
        started = time.perf_counter()
        method = request.method if request.method in KNOWN_METHODS else "<invalid method>"
        self.requests[(method,)].inc()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.view_name if match is not None else None) or UNNAMED_VIEW
        status = str(response.status_code)
        self.statuses[(status,)].inc()
        self.responses[(status, view, method)].inc()
        self.latencies[(view, method)].observe(time.perf_counter() - started)
        return response

    def process_exception(self, request, exception):
        """A view's exception that no inner middleware answered; Django turns it into a 500 after this."""
        self.exceptions[(type(exception).__name__,)].inc()
