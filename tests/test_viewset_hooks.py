"""The log-by-id view goes through DRF's own hooks (docs/architecture.md): what a filter backend or an object
permission added to the view decides applies to one log as it does to the list, against the real database."""

import pytest
from rest_framework.filters import BaseFilterBackend
from rest_framework.permissions import BasePermission

from logs.api.viewsets import ActivityLogViewSet
from tests.support.builders import activity_event, store


class OnlyUserTwo(BaseFilterBackend):
    def filter_queryset(self, request, queryset, view):
        return queryset.filter(user_id="user-2")


class NoSends(BasePermission):
    message = "Sends are not shown here."

    def has_object_permission(self, request, view, obj):
        return obj["action"] != "send"


@pytest.fixture
def logs(api_collection):
    documents = store(api_collection, [activity_event(user_id="user-1", action="send"),
                                       activity_event(user_id="user-2", action="receive")])
    return {document["userId"]: document["_id"] for document in documents}


def test_a_filter_backend_added_to_the_view_narrows_the_log_by_id_too(api_client, logs, monkeypatch):
    monkeypatch.setattr(ActivityLogViewSet, "filter_backends", [*ActivityLogViewSet.filter_backends, OnlyUserTwo])

    assert api_client.get(f"/user-logs/{logs['user-1']}").status_code == 404
    assert api_client.get(f"/user-logs/{logs['user-2']}").status_code == 200


def test_an_object_permission_added_to_the_view_is_checked_on_the_log_by_id(api_client, logs, monkeypatch):
    monkeypatch.setattr(ActivityLogViewSet, "permission_classes", [*ActivityLogViewSet.permission_classes, NoSends])

    refused = api_client.get(f"/user-logs/{logs['user-1']}")
    assert refused.status_code == 403 and refused.json() == {"detail": NoSends.message}
    assert api_client.get(f"/user-logs/{logs['user-2']}").status_code == 200


def test_the_query_string_does_not_narrow_the_log_by_id(api_client, logs):
    """Query parameters filter the listing; one log is addressed by its id alone, as before the hooks."""
    assert api_client.get(f"/user-logs/{logs['user-1']}?userId=user-2").status_code == 200
