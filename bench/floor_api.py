"""The URL map of `bench.load`'s floor rows: `/user-logs` read with nothing but the raw driver's calls.

- "floor": the deployed `ActivityLogViewSet`, so each request still passes the middleware, DRF's dispatch,
  authentication, the permissions, the throttle, the deadline, the serializer, the renderer and the audit
  line, and django-filter validates the query string. Only the read differs: the raw driver's own calls
  (those `bench.load` times as "raw driver"), without mongoengine's queries or the paginator. What this row
  costs above the raw driver is a floor under the API's own cost: no change to how the API reads can take
  it lower without removing one of the layers the contract asks for.
- "bare" (`BENCH_BARE=1`): no middleware, and a DRF view with no authentication, permission, throttle,
  deadline, audit line or filter validation and the JSON renderer alone: what Django, DRF, the serializer
  and the server cost with none of the API's own layers.

Both answer the measured requests with the deployed model's bytes (`bench.load` checks it before timing).
For scratch measurements of one layer at a time, BENCH_VIEW_DROP (here) and BENCH_DROP_MIDDLEWARE
(bench/floor_settings.py) leave layers of the "floor" row out.
"""

import math
import os

from django.conf import settings
from django.urls import include, path
from mongoengine.connection import get_db
from rest_framework import viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from logs.api.permissions import readable_logs
from logs.api.serializers import ActivityLogSerializer
from logs.api.viewsets import ActivityLogViewSet
from logs.events import parse_uuid
from logs.storage.documents import COLLECTION
from logs.storage.selectors import activity_log_list

NEWEST_FIRST = [("timestamp", -1), ("_id", -1)]
PAGE = 10


class RawReadsMixin:
    """`retrieve` and `list` reading with pymongo's `find_one`, `find` and `count_documents`."""

    def scope(self):
        """Stored-field filters every read carries for the requesting account."""
        user = readable_logs(self.request.user).get("user_id")
        return {"userId": user} if user else {}

    def get_object(self):
        try:
            log_id = parse_uuid(self.kwargs["pk"])
        except ValueError:
            raise NotFound() from None
        log = get_db()[COLLECTION].find_one({"_id": log_id, **self.scope()})
        if log is None:
            raise NotFound()
        self.check_object_permissions(self.request, log)
        return log

    def retrieve(self, request, *args, **kwargs):
        return Response(self.get_serializer(self.get_object()).data)

    def filters(self, request):
        """{stored field: value} of the query string's `userId` and `action`."""
        return {name: request.query_params[name] for name in ("userId", "action") if name in request.query_params}

    def list(self, request, *args, **kwargs):
        query = {**self.scope(), **self.filters(request)}
        collection = get_db()[COLLECTION]
        rows = list(collection.find(query).sort(NEWEST_FIRST).limit(PAGE))
        count = collection.count_documents(query)
        return Response({
            "count": count,
            "next": request.build_absolute_uri(f"?after={rows[-1]['_id']}") if count > PAGE else None,
            "previous": None,
            "page": 1,
            "limit": PAGE,
            "totalPages": math.ceil(count / PAGE),
            "results": self.get_serializer(rows, many=True).data,
        })


class RawReads(RawReadsMixin, ActivityLogViewSet):
    def filters(self, request):
        """The query string validated by the API's django-filter FilterSet, part of the fixed stack."""
        filterset = self.filterset_class(request.query_params, queryset=activity_log_list(), request=request)
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        return {name: value for name in ("userId", "action") if (value := filterset.form.cleaned_data.get(name))}


# Scratch measurements: layers of the "floor" row left out, comma-separated in BENCH_VIEW_DROP.
_DROPPED = set(filter(None, os.environ.get("BENCH_VIEW_DROP", "").split(",")))
if "authentication" in _DROPPED:
    RawReads.authentication_classes = ()
    RawReads.permission_classes = ()
    RawReads.scope = lambda self: {}
if "throttle" in _DROPPED:
    RawReads.throttle_classes = ()
if "browsable" in _DROPPED:
    RawReads.renderer_classes = (JSONRenderer,)
if "audit" in _DROPPED:
    RawReads.finalize_response = viewsets.GenericViewSet.finalize_response
if "deadline" in _DROPPED:
    RawReads.dispatch = viewsets.GenericViewSet.dispatch
    RawReads.initial = viewsets.GenericViewSet.initial


class BareReads(RawReadsMixin, viewsets.GenericViewSet):
    serializer_class = ActivityLogSerializer
    authentication_classes = permission_classes = throttle_classes = ()
    renderer_classes = (JSONRenderer,)

    def scope(self):
        return {}


view = BareReads if settings.BENCH_BARE else RawReads
urlpatterns = [
    path("user-logs/<str:pk>", view.as_view({"get": "retrieve"})),
    path("user-logs", view.as_view({"get": "list"})),
    path("", include("activity_service.urls")),
]
handler400, handler403, handler404, handler500 = (
    "logs.api.errors.bad_request", "logs.api.errors.permission_denied", "logs.api.errors.not_found",
    "logs.api.errors.server_error")
