"""Errors raised before a view runs (no route matched): JSON for the API, Django's page elsewhere."""

from django.http import JsonResponse
from django.views import defaults

API_PREFIX = "/api/"


def page_not_found(request, exception):
    """An API client gets DRF's error shape even for a URL no route matches (e.g. /api/v1/images/abc/file)."""
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)
