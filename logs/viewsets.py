"""The read-only `/user-logs` API: thin DRF views over the selectors."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, viewsets
from pymongo.errors import ConnectionFailure
from rest_framework.exceptions import APIException, NotFound

from . import schema  # noqa: F401  (registers the OpenAPI extension for DocumentFilterBackend)
from .filters import ActivityLogFilter, DocumentFilterBackend
from .pagination import ActivityLogPagination
from .selectors import activity_log_get, activity_log_list
from .serializers import ActivityLogSerializer


class DatabaseUnavailable(APIException):
    status_code = 503
    default_detail = "The activity log database is unreachable; try again shortly."
    default_code = "database_unavailable"


_NOT_FOUND = OpenApiResponse(
    inline_serializer("NotFound", {"detail": serializers.CharField()}),
    description="No such log, or a page past the last one.",
)
_INVALID = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="Invalid query values: an object whose keys name the parameters, each with a list of messages.",
)


@extend_schema_view(
    list=extend_schema(responses={200: ActivityLogSerializer(many=True), 400: _INVALID, 404: _NOT_FOUND}),
    retrieve=extend_schema(
        parameters=[OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH,
                                    description="The log's id, which is its event's eventId (a UUID); a malformed one is 404.")],
        responses={200: ActivityLogSerializer, 404: _NOT_FOUND},
    ),
)
class ActivityLogViewSet(viewsets.ReadOnlyModelViewSet):
    """Stored activity logs, newest first. Filter with `userId`, `action`, `from`, `to`; page with `page`, `limit`."""

    serializer_class = ActivityLogSerializer
    pagination_class = ActivityLogPagination
    filter_backends = [DocumentFilterBackend]
    filterset_class = ActivityLogFilter
    lookup_value_regex = "[^/]+"  # any id reaches the view, which answers 404 JSON for a malformed one
    queryset = None

    def get_queryset(self):
        return activity_log_list()

    def get_object(self):
        log = activity_log_get(log_id=self.kwargs[self.lookup_field])
        if log is None:
            raise NotFound()
        return log

    def handle_exception(self, exc):
        """A database outage is a 503 a client may retry (as /readyz reports), not a 500 bug report."""
        if isinstance(exc, ConnectionFailure):
            exc = DatabaseUnavailable()
        return super().handle_exception(exc)
