"""The API's routes: `/user-logs` with or without a trailing slash (no redirect), and the probes."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from .health import healthz, readyz
from .viewsets import ActivityLogViewSet


class OptionalSlashRouter(SimpleRouter):
    """Routes that match with and without the trailing slash, so neither form is redirected."""

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("user-logs", ActivityLogViewSet, basename="user-logs")

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    *router.urls,
]
