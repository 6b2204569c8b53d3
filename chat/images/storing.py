"""One photo, in a worker thread: download, validate, upload under a deterministic key; and the row fields of a stored copy."""

import hashlib
import time
from dataclasses import dataclass
from urllib.parse import quote

import requests
import sentry_sdk
from django.conf import settings
from django.core.files.storage import Storage

from chat.images.download import DownloadedImage, ImageDownloadError, image_download
from chat.images.photo_api import Photo
from chat.images.renditions import RenditionsOutcome, image_renditions_store
from chat.models import Image, ImageStatus, RenditionsStatus
from core.object_storage import StorageUnavailable, storage_deadline, storage_describe
from core.s3_backend import ObjectContent


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int
    max_pixels: int
    deadline_seconds: float


@dataclass(frozen=True)
class PhotoOutcome:
    """What happened to one photo: stored (key set) or failed (error set)."""

    photo: Photo
    ms: int
    key: str = ""
    content_type: str = ""
    byte_size: int = 0
    sha256: str = ""
    etag: str = ""
    width: int | None = None
    height: int | None = None
    error: str = ""
    error_kind: str = ""
    # Made in the same thread while the original is in hand; recorded once the row has its id.
    # None when the bytes are those whose renditions are recorded already: the rows stay as they are.
    renditions: RenditionsOutcome | None = None

    @property
    def stored(self) -> bool:
        return not self.error


def download_limits() -> DownloadLimits:
    """The limits every download of a photo obeys, from the settings."""
    return DownloadLimits(
        max_bytes=settings.IMAGE_FETCH_MAX_BYTES,
        max_pixels=settings.IMAGE_FETCH_MAX_PIXELS,
        deadline_seconds=settings.IMAGE_FETCH_DEADLINE,
    )


def image_storage_key(*, photo_id: int, source_url: str, extension: str) -> str:
    """The object key of a photo: the same every run, so a re-run overwrites, never copies."""
    # From the source URL, not the bytes: a photo whose bytes change keeps its one key.
    url_hash = hashlib.sha256(source_url.encode()).hexdigest()[:16]
    return f"images/{photo_id}-{url_hash}.{extension}"


def image_store_one(
    *,
    photo: Photo,
    session: requests.Session,
    storage: Storage,
    limits: DownloadLimits,
    renditions_ready_for: str = "",
) -> PhotoOutcome:
    """Download and store one photo; a bad photo is an outcome, an unusable storage raises StorageUnavailable.

    renditions_ready_for: the sha256 of the bytes whose renditions are stored and recorded already
    (a refresh of a stored image); bytes with that hash keep them: nothing is encoded or uploaded.
    """
    started = time.monotonic()
    try:
        with sentry_sdk.start_span(op="image.download", name=photo.url):
            downloaded = image_download(
                session=session,
                url=photo.url,
                max_bytes=limits.max_bytes,
                max_pixels=limits.max_pixels,
                deadline_seconds=limits.deadline_seconds,
            )
    except ImageDownloadError as error:
        return PhotoOutcome(photo=photo, ms=_ms_since(started), error=str(error), error_kind=failure_kind(error))
    try:
        key = image_storage_key(photo_id=photo.photo_id, source_url=photo.url, extension=downloaded.extension)
        with sentry_sdk.start_span(op="storage.upload", name=key):
            etag = image_upload(storage, key=key, downloaded=downloaded, photo=photo)
        renditions = None
        if downloaded.sha256 != renditions_ready_for:
            # After the original is stored: whatever happens to them, the original is kept.
            renditions = image_renditions_store(file=downloaded.file, source_sha256=downloaded.sha256, storage=storage)
    finally:
        downloaded.close()
    return PhotoOutcome(
        photo=photo,
        ms=_ms_since(started),
        key=key,
        content_type=downloaded.content_type,
        byte_size=downloaded.byte_size,
        sha256=downloaded.sha256,
        etag=etag,
        width=downloaded.width,
        height=downloaded.height,
        renditions=renditions,
    )


# What image_take_stored_copy sets: the fields every writer of a stored copy saves.
STORED_COPY_FIELDS = [
    "status",
    "file",
    "content_type",
    "byte_size",
    "sha256",
    "etag",
    "width",
    "height",
    "stored_at",
    "last_error",
    "renditions_status",
]


def image_take_stored_copy(image: Image, outcome: PhotoOutcome, *, now) -> None:
    """The row's fields for the copy an upload just finished (not saved)."""
    if image.sha256 != outcome.sha256:
        # New bytes: the renditions of the old ones no longer show this picture.
        image.renditions_status = RenditionsStatus.PENDING
    image.status = ImageStatus.STORED
    image.file.name = outcome.key
    image.content_type, image.byte_size, image.sha256 = outcome.content_type, outcome.byte_size, outcome.sha256
    image.etag = outcome.etag
    image.width, image.height = outcome.width, outcome.height
    image.stored_at = now
    image.last_error = ""


def failure_kind(error: Exception) -> str:
    """A short category for counting failures by reason."""
    return {
        "DownloadFailed": "download failed",
        "ImageTooLarge": "too large",
        "DecompressionBomb": "decompression bomb",
        "ImageRejected": "not an allowed image",
    }.get(type(error).__name__, type(error).__name__)


def image_upload(storage: Storage, *, key: str, downloaded: DownloadedImage, photo: Photo) -> str:
    """Store the bytes under key with their metadata; the ETag answered. StorageUnavailable when it fails or is slow."""
    content = ObjectContent(
        downloaded.file,
        content_type=downloaded.content_type,
        # S3 metadata travels as HTTP headers: ASCII only. sha256 travels with the object so
        # verify_images can tell it from other bytes of the same size.
        metadata={
            "source-url": quote(photo.url, safe=":/?#[]@!$&'()*+,;=%~"),
            "photo-id": str(photo.photo_id),
            "sha256": downloaded.sha256,
        },
    )
    try:
        # A wall-clock bound on the upload: one PutObject, however large the image (pru_app.s3_options).
        with storage_deadline(f"upload of {key}"):
            saved = storage.save(key, content)
    except Exception as error:  # any storage failure stops the run; the message says which
        raise StorageUnavailable(
            f"upload of {key} to {storage_describe(storage=storage)} failed: {type(error).__name__}: {error}"
        ) from error
    if saved != key:
        raise StorageUnavailable(
            f"storage saved {key!r} as {saved!r}: enable overwriting (file_overwrite / allow_overwrite)"
        )
    return content.etag


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
