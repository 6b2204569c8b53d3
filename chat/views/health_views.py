"""Liveness and readiness probes for nginx, compose and the stack runner."""

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from chat.selectors import readiness_failures


@never_cache
@require_GET
def healthz(request):
    """The process answers; no I/O."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    """The database and the object storage answer; 503 naming what failed."""
    failures = readiness_failures()
    if failures:
        return JsonResponse({"status": "unavailable", "failed": failures}, status=503)
    return JsonResponse({"status": "ok"})
