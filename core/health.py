"""Liveness and readiness probes for nginx, compose and the stack runner."""

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core.object_storage import storage_check


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


def readiness_failures() -> dict[str, str]:
    """What the service depends on and cannot reach right now, with the reason."""
    failures = {}
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # any failure means not ready; the reason is reported
        failures["database"] = type(error).__name__
    try:
        storage_check()
    except Exception as error:
        # The underlying cause (EndpointConnectionError, NoSuchBucket…) names what to fix.
        failures["storage"] = type(error.__cause__ or error).__name__
    return failures
