"""Reads that go beyond a one-line queryset."""

from django.db import connection

from chat.services.storage import storage_check


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
