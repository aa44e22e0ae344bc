"""The read-only `/user-logs` API: thin DRF views over the selectors."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from pymongo.errors import ConnectionFailure, PyMongoError, ServerSelectionTimeoutError
from rest_framework import serializers, viewsets
from rest_framework.exceptions import APIException, NotFound
from rest_framework.permissions import IsAuthenticated

from ..storage.selectors import activity_log_get, activity_log_list
from . import schema  # noqa: F401  (registers the OpenAPI extension for DocumentFilterBackend)
from .audit import authenticated_user, record_read
from .deadlines import ARRIVED, api_database_deadline, api_seconds_left
from .filters import ActivityLogFilter, DocumentFilterBackend
from .pagination import ActivityLogPagination
from .permissions import ReadsOnlyOwnLogs, readable_logs
from .serializers import ActivityLogSerializer


class DatabaseUnavailable(APIException):
    status_code = 503
    default_detail = "The activity log database is unreachable; try again shortly."
    default_code = "database_unavailable"


class ServerBusy(APIException):
    status_code = 503
    default_detail = "The API is too busy to answer in time; try again shortly."
    default_code = "server_busy"


class DatabaseTimeout(APIException):
    status_code = 504
    default_detail = "The activity log database did not answer in time; try again, or narrow the query."
    default_code = "database_timeout"


def database_failure(exc):
    """The API error for a pymongo error, by pymongo's own classification; None for any other error.

    Server selection running out of time means no server answers (503); any other timeout (`exc.timeout`:
    the server's `maxTimeMS`, a socket read) means one answered too slowly (504); a lost connection is 503.
    """
    if isinstance(exc, ServerSelectionTimeoutError):
        return DatabaseUnavailable()
    if isinstance(exc, PyMongoError) and exc.timeout:
        return DatabaseTimeout(f"The activity log database did not answer within {settings.API_DATABASE_TIMEOUT_MS} ms "
                               f"({type(exc).__name__}); try again, or narrow the query.")
    if isinstance(exc, ConnectionFailure):
        return DatabaseUnavailable()
    return None


_DETAIL = inline_serializer("Detail", {"detail": serializers.CharField()})
_NOT_FOUND = OpenApiResponse(
    _DETAIL,
    description="No such log, or a numbered page past the last one.",
)
_UNAUTHENTICATED = OpenApiResponse(_DETAIL, description="No credentials, or a token or session that is not valid.")
_FORBIDDEN = OpenApiResponse(
    _DETAIL, description="`userId` names another user and this account may read only its own logs.")
_THROTTLED = OpenApiResponse(
    _DETAIL, description="Too many requests for this account; the Retry-After header says when to retry.")
_INVALID = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="Invalid query values: an object whose keys name the parameters, each with a list of messages; "
                "also an `after` or `before` naming no log this account may read.",
)
_DATABASE = {
    503: OpenApiResponse(_DETAIL, description="The database is unreachable."),
    504: OpenApiResponse(_DETAIL, description="The database did not answer within the request's deadline."),
}


@extend_schema_view(
    list=extend_schema(responses={200: ActivityLogSerializer(many=True), 400: _INVALID, 401: _UNAUTHENTICATED,
                                  403: _FORBIDDEN, 404: _NOT_FOUND, 429: _THROTTLED, **_DATABASE}),
    retrieve=extend_schema(
        parameters=[OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH,
                                    description="The log's id, which is its event's eventId (a UUID); "
                                                "a malformed one is 404.")],
        responses={200: ActivityLogSerializer, 401: _UNAUTHENTICATED, 404: _NOT_FOUND, 429: _THROTTLED, **_DATABASE},
    ),
)
class ActivityLogViewSet(viewsets.ReadOnlyModelViewSet):
    """Stored activity logs, newest first. Filter with `userId`, `action`, `from`, `to`; page with `page` and `limit`
    (counted), or walk with `after` (or `before`) a log's id and `limit` (no count): follow `next`.

    Send `Authorization: Token <key>`. An account without the all-users permission reads only its own logs.
    """

    serializer_class = ActivityLogSerializer
    pagination_class = ActivityLogPagination
    filter_backends = [DocumentFilterBackend]
    filterset_class = ActivityLogFilter
    lookup_value_regex = "[^/]+"  # any id reaches the view, which answers 404 JSON for a malformed one
    queryset = None
    permission_classes = [IsAuthenticated, ReadsOnlyOwnLogs]

    def dispatch(self, request, *args, **kwargs):
        """Every database call of the request shares one deadline (`API_DATABASE_TIMEOUT_MS`), counted from
        when the request reached the server (`deadlines.ARRIVED`, set by the server; from now under `runserver`)."""
        with api_database_deadline(request.META.get(ARRIVED)):
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        """A request that spent its whole deadline waiting for a thread is a 503 before any database call."""
        super().initial(request, *args, **kwargs)
        if api_seconds_left(request.META.get(ARRIVED)) <= 0:
            raise ServerBusy()

    def get_queryset(self):
        """The logs this account may read (its own, unless it reads every user's), newest first."""
        return activity_log_list(filters=readable_logs(self.request.user))

    def get_object(self):
        """DRF's `GenericAPIView.get_object` over the stored logs: the scoped queryset, through every
        filter backend, then the object permissions. Another user's log is as absent as an unknown id (404):
        the answer must not reveal that it exists."""
        queryset = self.filter_queryset(self.get_queryset())
        log = activity_log_get(queryset=queryset, log_id=self.kwargs[self.lookup_url_kwarg or self.lookup_field])
        if log is None:
            raise NotFound()
        self.check_object_permissions(self.request, log)
        return log

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        record_read(request=request, status=response.status_code, owner=self.owner_read(request, response),
                    log_id=self.kwargs.get(self.lookup_field))
        return response

    def owner_read(self, request, response):
        """Whose logs the request read or asked for; None for every user's, or when it is unknown."""
        if self.action == "retrieve":
            return response.data.get("userId") if response.status_code == 200 else None
        requested = request.query_params.get("userId")
        if requested or self.action != "list":
            return requested
        user = authenticated_user(request)
        return readable_logs(user).get("user_id") if user else None

    def handle_exception(self, exc):
        """A database outage or a too-slow query is a 503/504 a client may retry, not a 500 bug report."""
        return super().handle_exception(database_failure(exc) or exc)
