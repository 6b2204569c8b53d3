"""Download a known image again from its source_url, through the ingestion's own safe path (image_store_one)."""

import contextvars
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog
from django.conf import settings
from django.core.files.storage import Storage, default_storage
from django.utils import timezone

from chat.models import Image, ImageStatus
from chat.outbound_http import OutboundPolicy, outbound_session
from chat.photo_api import Photo
from chat.services.image_fetch_lock import image_fetch_lock
from chat.services.image_storing import PhotoOutcome, download_limits, image_store_one
from chat.services.images import image_take_stored_copy
from chat.services.storage import StorageUnavailable, storage_check

logger = structlog.get_logger(__name__)

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
        image_take_stored_copy(image, outcome, now=now)
        image.verified_at = now
        return RepairOutcome(image_id=image.pk, repaired=True)
    reason = f"{previous_problem}; download again failed: {outcome.error}" if previous_problem else outcome.error
    image.last_error = reason[:2000]
    if outcome.error in _SOURCE_GONE_ERRORS and image.status != ImageStatus.STORED:
        # Lost rows are never downloaded again by --repair: no retry loop against a source that is gone.
        image.status = ImageStatus.LOST
        return RepairOutcome(image_id=image.pk, repaired=False, lost=True, reason=reason)
    return RepairOutcome(image_id=image.pk, repaired=False, reason=reason)



@dataclass
class RefetchSummary:
    selected: int = 0
    stored: int = 0
    failed: int = 0
    lost: int = 0
    reasons: list[str] = field(default_factory=list)


def image_fetch_again(*, image_ids: Iterable[int], storage: Storage | None = None, workers: int | None = None) -> RefetchSummary:
    """Download the given images again from their source_url, whatever their state (lost ones too).

    Raises FetchAlreadyRunning while another download run is going and StorageUnavailable when
    the storage cannot take the uploads (the images finished before stay written).
    """
    storage = storage or default_storage
    workers = workers or settings.IMAGE_FETCH_WORKERS
    summary = RefetchSummary()
    with image_fetch_lock():
        storage_check(storage=storage)
        rows = list(Image.objects.filter(pk__in=list(image_ids)).order_by("pk"))
        summary.selected = len(rows)
        session = outbound_session(OutboundPolicy.from_settings(pool_size=workers))
        done, fatal = [], None
        try:
            with ThreadPoolExecutor(max_workers=min(workers, max(1, len(rows))), thread_name_prefix="image-refetch") as executor:
                futures = [
                    executor.submit(contextvars.copy_context().run, image_download_again, image=row, session=session, storage=storage)
                    for row in rows
                ]
                for row, future in zip(rows, futures):
                    try:
                        done.append((row, image_apply_repair(image=row, outcome=future.result(), previous_problem="")))
                    except StorageUnavailable as error:
                        fatal = fatal or error
        finally:
            session.close()
        if done:
            Image.objects.bulk_update([row for row, _ in done], REPAIRED_FIELDS)
        for row, result in done:
            if result.repaired:
                summary.stored += 1
                logger.info("image_fetch.stored", image_id=row.pk, key=row.file.name, bytes=row.byte_size, ms=0)
            else:
                summary.failed += 1
                summary.lost += result.lost
                if len(summary.reasons) < 10:
                    summary.reasons.append(f"image {row.pk}: {result.reason}")
                logger.warning("image_fetch.failed", source_url=row.source_url, image_id=row.pk, photo_id=row.photo_id,
                               reason=result.reason, kind="download again failed")
        if fatal is not None:
            raise fatal
    return summary
