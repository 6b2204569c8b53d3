"""Reads that go beyond a one-line queryset."""

from django.core.files.storage import default_storage
from django.db import connection


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
        # A cheap HEAD-like call: listing nothing still needs the bucket and credentials.
        default_storage.exists("readyz-probe")
    except Exception as error:
        failures["storage"] = type(error).__name__
    return failures
