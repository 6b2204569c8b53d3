"""Stored images: Django authorises, the private bucket delivers (through nginx or a signed URL).

Two doors, one delivery: /stored-images/<pk> for staff in the admin, and the API's
/api/v1/images/<id>/file for recipients (token or session), which may open only the images
their own chat holds.
"""

import threading
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.http import (
    FileResponse,
    HttpResponse,
    HttpResponseForbidden,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.views import APIView
from storages.backends.s3 import S3Storage

from chat.api.serializers import ERROR_RESPONSES, ErrorSerializer
from chat.models import Image, ImageStatus
from chat.selectors import staff_may_view_images, stored_image_for_reader

# nginx's internal location that proxies to the storage endpoint (deploy/nginx).
X_ACCEL_PREFIX = "/internal-storage"
# nginx's internal location that serves MEDIA_ROOT from disk (FileSystemStorage).
X_ACCEL_FILE_PREFIX = "/internal-media"
# nginx follows the internal redirect at once; the signature need not live long.
X_ACCEL_URL_EXPIRY = 60
_public_storages: dict[tuple, S3Storage] = {}
_public_storages_lock = threading.Lock()


@require_GET
def stored_image(request, pk: int):
    """The stored copy of an image; 403 without a staff session, 404 when nothing is stored."""
    if not staff_may_view_images(request.user):
        return HttpResponseForbidden("Stored images are for staff only.", content_type="text/plain")
    image = get_object_or_404(Image.objects.only("file", "content_type", "status"), pk=pk, status=ImageStatus.STORED)
    return stored_image_response(image)


class ImageBytesNegotiation(BaseContentNegotiation):
    """The answer is the image or a JSON error, whatever an <img>'s Accept header lists."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return parsers[0]


class ImageFileApi(APIView):
    content_negotiation_class = ImageBytesNegotiation

    @extend_schema(
        operation_id="image_file",
        responses={
            (200, "image/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The stored copy."),
            401: ERROR_RESPONSES[401],
            404: OpenApiResponse(ErrorSerializer, description="No such image, no stored copy, or not in the caller's chat."),
        },
    )
    def get(self, request, image_id: int):
        """The stored copy of an image a message in the caller's chat carries (staff: any stored image)."""
        try:
            image = stored_image_for_reader(user=request.user, image_id=image_id)
        except Image.DoesNotExist as missing:
            raise NotFound() from missing
        response = stored_image_response(image)
        # A token or a session decides who may see it: no shared cache may keep it for others.
        response["Vary"] = "Cookie, Authorization"
        return response


def stored_image_response(image: Image) -> HttpResponse:
    """The image's bytes by the configured IMAGE_SERVE_MODE."""
    mode = settings.IMAGE_SERVE_MODE
    if not isinstance(default_storage, S3Storage):
        # The file system has no signed URLs: nginx serves it from disk, or Django streams it.
        mode = "x-accel-file" if mode == "x-accel" and isinstance(default_storage, FileSystemStorage) else "stream"
    if mode == "x-accel-file":
        response = _x_accel_file_response(image)
    elif mode == "x-accel":
        response = _x_accel_response(image)
    elif mode == "presigned":
        response = _presigned_redirect(image)
    else:
        response = _stream_response(image)
    response["Cache-Control"] = "private, no-store" if mode == "presigned" else "private, max-age=300"
    response["Vary"] = "Cookie"
    return response


def _x_accel_response(image: Image) -> HttpResponse:
    # Signed for AWS_S3_ENDPOINT_URL, the address nginx forwards to, with its Host header.
    signed = urlsplit(default_storage.url(image.file.name, expire=X_ACCEL_URL_EXPIRY))
    response = HttpResponse(content_type=image.content_type or "application/octet-stream")
    response["X-Accel-Redirect"] = f"{X_ACCEL_PREFIX}{signed.path}?{signed.query}"
    return response


def _x_accel_file_response(image: Image) -> HttpResponse:
    # nginx's internal location aliases MEDIA_ROOT (NGINX_MEDIA_ROOT): the key is the path below it.
    response = HttpResponse(content_type=image.content_type or "application/octet-stream")
    response["X-Accel-Redirect"] = f"{X_ACCEL_FILE_PREFIX}/{quote(image.file.name)}"
    return response


def _presigned_redirect(image: Image) -> HttpResponseRedirect:
    return HttpResponseRedirect(_public_storage().url(image.file.name))


def _stream_response(image: Image) -> FileResponse:
    response = FileResponse(default_storage.open(image.file.name, "rb"), content_type=image.content_type or None)
    # Bytes from the internet, served from our origin: never let a browser run them.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def _public_storage() -> S3Storage:
    """The default storage's twin that signs URLs for AWS_S3_PUBLIC_ENDPOINT_URL (a signature covers the host)."""
    public_endpoint = settings.AWS_S3_PUBLIC_ENDPOINT_URL or default_storage.endpoint_url
    key = (default_storage.__class__, default_storage.bucket_name, default_storage.endpoint_url, public_endpoint)
    with _public_storages_lock:
        if key not in _public_storages:
            options = dict(settings.STORAGES["default"].get("OPTIONS", {}))
            options["endpoint_url"] = public_endpoint
            _public_storages[key] = default_storage.__class__(**options)
        return _public_storages[key]
