"""Download a known image again from its source_url, through the ingestion's own safe path (image_store_one)."""

from dataclasses import dataclass

from django.core.files.storage import Storage
from django.utils import timezone

from chat.models import Image, ImageStatus
from chat.photo_api import Photo
from chat.services.image_storing import PhotoOutcome, download_limits, image_store_one

# The source answered that the photo is not there (any more): downloading again cannot help.
_SOURCE_GONE_ERRORS = frozenset({"HTTP 404", "HTTP 410"})
REPAIRED_FIELDS = [
    "status", "file", "content_type", "byte_size", "sha256", "width", "height", "stored_at",
    "verified_at", "last_error", "attempts", "updated_at",
]


@dataclass(frozen=True)
class RepairOutcome:
    image_id: int
    repaired: bool
    lost: bool = False
    reason: str = ""


def image_download_again(*, image: Image, session, storage: Storage) -> PhotoOutcome:
    """Download and store the row's source again (no database); StorageUnavailable when the upload fails."""
    photo = Photo(
        photo_id=image.photo_id, url=image.source_url, title=image.title,
        description=image.description, user_id=image.api_user_id,
    )
    return image_store_one(photo=photo, session=session, storage=storage, limits=download_limits())


def image_apply_repair(*, image: Image, outcome: PhotoOutcome, previous_problem: str, now=None) -> RepairOutcome:
    """Set the row's fields from the download (not saved): stored again, lost, or still broken with both reasons."""
    now = now or timezone.now()
    image.attempts += 1
    image.updated_at = now
    if outcome.stored:
        image.status = ImageStatus.STORED
        image.file.name = outcome.key
        image.content_type, image.byte_size, image.sha256 = outcome.content_type, outcome.byte_size, outcome.sha256
        image.width, image.height = outcome.width, outcome.height
        image.stored_at = image.verified_at = now
        image.last_error = ""
        return RepairOutcome(image_id=image.pk, repaired=True)
    reason = f"{previous_problem}; download again failed: {outcome.error}" if previous_problem else outcome.error
    image.last_error = reason[:2000]
    if outcome.error in _SOURCE_GONE_ERRORS and image.status != ImageStatus.STORED:
        # Lost rows are never downloaded again by --repair: no retry loop against a source that is gone.
        image.status = ImageStatus.LOST
        return RepairOutcome(image_id=image.pk, repaired=False, lost=True, reason=reason)
    return RepairOutcome(image_id=image.pk, repaired=False, reason=reason)

