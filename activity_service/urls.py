"""Top-level URL map; the API's routes live with the app in logs/urls.py."""

from django.urls import include, path

urlpatterns = [
    path("", include("logs.urls")),
    path("", include("django_prometheus.urls")),
]
