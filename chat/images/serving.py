"""Stored images: Django authorises, the private bucket delivers (through nginx or a signed URL).

Two doors, one delivery: /stored-images/<pk> for staff in the admin, and the API's
/api/v1/images/<id>/file for recipients (token or session), which may open only the images
their own chat holds.
"""

import threading
from typing import Any, cast
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, default_storage
from django.http import FileResponse, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from storages.backends.s3 import S3Storage

from chat.models import Image, ImageRendition

# nginx's internal location that proxies to the storage endpoint (deploy/nginx).
X_ACCEL_PREFIX = "/internal-storage"
# nginx's internal location that serves MEDIA_ROOT from disk (FileSystemStorage).
X_ACCEL_FILE_PREFIX = "/internal-media"
# nginx follows the internal redirect at once; the signature need not live long.
X_ACCEL_URL_EXPIRY = 60
# A rendition's URL names its bytes (their sha256): what it answers never changes, so a browser
# keeps it a year without asking again. Private: only the user it was authorised for.
IMMUTABLE_CACHE_CONTROL = "private, max-age=31536000, immutable"
ORIGINAL_CACHE_CONTROL = "private, max-age=300"
_public_storages: dict[tuple, S3Storage] = {}
_public_storages_lock = threading.Lock()


def stored_image_response(image: Image) -> HttpResponseBase:
    """The image's bytes by the configured IMAGE_SERVE_MODE."""
    key = image.file.name
    if not key:
        raise ValueError(f"image {image.pk} names no stored object")
    return stored_object_response(key=key, content_type=image.content_type, cache_control=ORIGINAL_CACHE_CONTROL)


def stored_rendition_response(rendition: ImageRendition) -> HttpResponseBase:
    """A rendition's bytes, as the original's are served, with a year's private caching (its key names its bytes)."""
    return stored_object_response(
        key=rendition.file, content_type=rendition.content_type, cache_control=IMMUTABLE_CACHE_CONTROL
    )


def stored_object_response(*, key: str, content_type: str, cache_control: str) -> HttpResponseBase:
    """A stored object's bytes by IMAGE_SERVE_MODE, after the caller has decided who may see them."""
    mode = settings.IMAGE_SERVE_MODE
    storage = default_storage
    response: HttpResponseBase
    if isinstance(storage, S3Storage) and mode == "x-accel":
        response = _x_accel_response(storage, key=key, content_type=content_type)
    elif isinstance(storage, S3Storage) and mode == "presigned":
        response = _presigned_redirect(storage, key=key)
    elif isinstance(storage, FileSystemStorage) and mode == "x-accel":
        # The file system has no signed URLs: nginx serves it from disk, or Django streams it.
        mode = "x-accel-file"
        response = _x_accel_file_response(key=key, content_type=content_type)
    else:
        mode = "stream"
        response = _stream_response(storage, key=key, content_type=content_type)
    # A redirect to a signed URL must not outlive its signature.
    response["Cache-Control"] = "private, no-store" if mode == "presigned" else cache_control
    response["Vary"] = "Cookie"
    return response


def _x_accel_response(storage: S3Storage, *, key: str, content_type: str) -> HttpResponse:
    # Signed for AWS_S3_ENDPOINT_URL, the address nginx forwards to, with its Host header.
    signed = urlsplit(storage.url(key, expire=X_ACCEL_URL_EXPIRY))
    response = HttpResponse(content_type=content_type or "application/octet-stream")
    response["X-Accel-Redirect"] = f"{X_ACCEL_PREFIX}{signed.path}?{signed.query}"
    return response


def _x_accel_file_response(*, key: str, content_type: str) -> HttpResponse:
    # nginx's internal location aliases MEDIA_ROOT (NGINX_MEDIA_ROOT): the key is the path below it.
    response = HttpResponse(content_type=content_type or "application/octet-stream")
    response["X-Accel-Redirect"] = f"{X_ACCEL_FILE_PREFIX}/{quote(key)}"
    return response


def _presigned_redirect(storage: S3Storage, *, key: str) -> HttpResponseRedirect:
    return HttpResponseRedirect(_public_storage(storage).url(key))


def _stream_response(storage: Storage, *, key: str, content_type: str) -> FileResponse:
    response = FileResponse(storage.open(key, "rb"), content_type=content_type or None)
    # Bytes from the internet, served from our origin: never let a browser run them.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def _public_storage(storage: S3Storage) -> S3Storage:
    """The storage's twin that signs URLs for AWS_S3_PUBLIC_ENDPOINT_URL (a signature covers the host)."""
    public_endpoint = settings.AWS_S3_PUBLIC_ENDPOINT_URL or storage.endpoint_url
    key = (storage.__class__, storage.bucket_name, storage.endpoint_url, public_endpoint)
    with _public_storages_lock:
        if key not in _public_storages:
            default = cast("dict[str, Any]", settings.STORAGES["default"])
            options = dict(default.get("OPTIONS", {}))
            options["endpoint_url"] = public_endpoint
            _public_storages[key] = storage.__class__(**options)
        return _public_storages[key]
