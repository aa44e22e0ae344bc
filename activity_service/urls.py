"""Top-level URL map; the API's routes live with the app in logs/api/urls.py."""

from django.http import JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("", include("logs.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # DRF's login and logout pages for the browsable API (session authentication).
    path("api-auth/", include("rest_framework.urls")),
]


def not_found(request, exception=None):
    """Unrouted paths answer JSON like the API does, not Django's HTML page."""
    return JsonResponse({"detail": "Not found."}, status=404)


handler404 = not_found
handler500 = "rest_framework.exceptions.server_error"
