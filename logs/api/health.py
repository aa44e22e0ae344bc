"""Liveness and readiness for load balancers and Kubernetes probes."""

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from ..storage.layout import serving_layout_reason
from .deadlines import database_unavailable_reason


@csrf_exempt  # a write method is a 405 here, not a CSRF 403
@require_safe
def healthz(request):
    """The process answers; deliberately no database call, so an outage does not restart every pod."""
    return JsonResponse({"status": "ok"})


@csrf_exempt  # a write method is a 405 here, not a CSRF 403
@require_safe
def readyz(request):
    """Ready while MongoDB answers a ping and holds this version's layout; 503 with the reason otherwise."""
    reason = database_unavailable_reason() or serving_layout_reason()
    if reason is not None:
        return JsonResponse({"status": "unavailable", "reason": reason}, status=503)
    return JsonResponse({"status": "ok"})
