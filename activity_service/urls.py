"""Top-level URL map; the API's routes live with the app in logs/api/urls.py."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("", include("logs.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # DRF's login and logout pages for the browsable API (session authentication).
    path("api-auth/", include("rest_framework.urls")),
]

# Django's own error pages are HTML; the API's errors are JSON (logs/api/errors.py).
handler400 = "logs.api.errors.bad_request"
handler403 = "logs.api.errors.permission_denied"
handler404 = "logs.api.errors.not_found"
handler500 = "logs.api.errors.server_error"
