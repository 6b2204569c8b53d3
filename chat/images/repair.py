"""Repair: download a known image again from its source_url, through the ingestion's own safe path (image_store_one).

One idea, one name: `verify_images --repair`, the admin's "Repair selected" action and the
scheduled verify all come through here.
"""

from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

import structlog
from django.conf import settings
from django.core.files.storage import Storage, default_storage
from django.utils import timezone

from chat.images.fetch_lock import image_fetch_lock
from chat.images.photo_api import Photo
from chat.images.renditions import RenditionsOutcome, image_renditions_record
from chat.images.storing import (
    STORED_COPY_FIELDS,
    PhotoOutcome,
    download_limits,
    image_store_one,
    image_take_stored_copy,
)
from chat.models import Image, ImageStatus
from core.concurrency import ContextThreadPool
from core.object_storage import StorageUnavailable, storage_check
from core.outbound_http import OutboundPolicy, outbound_session

logger = structlog.get_logger(__name__)

# The source answered that the photo is not there (any more): downloading again cannot help.
_SOURCE_GONE_ERRORS = frozenset({"HTTP 404", "HTTP 410"})
REPAIR_FIELDS = [*STORED_COPY_FIELDS, "verified_at", "attempts", "updated_at"]


@dataclass(frozen=True)
class RepairOutcome:
    image_id: int
    repaired: bool
    lost: bool = False
    reason: str = ""


@dataclass
class RepairBatch:
    """Rows repaired (or not) and written; the first storage failure, raised once the caller has logged them."""

    done: list[tuple[Image, RepairOutcome]]
    storage_failure: StorageUnavailable | None = None

    def raise_storage_failure(self) -> None:
        if self.storage_failure is not None:
            raise self.storage_failure


def image_repair_download(*, image: Image, session, storage: Storage) -> PhotoOutcome:
    """Download and store the row's source again (no database); StorageUnavailable when the upload fails."""
    photo = Photo(
        photo_id=image.photo_id,
        url=image.source_url,
        title=image.title,
        description=image.description,
        user_id=image.api_user_id,
    )
    return image_store_one(photo=photo, session=session, storage=storage, limits=download_limits())


def image_repair_apply(*, image: Image, outcome: PhotoOutcome, previous_problem: str, now=None) -> RepairOutcome:
    """Set the row's fields from the download (not saved): stored again, lost, or still broken with both reasons."""
    now = now or timezone.now()
    image.attempts += 1
    image.updated_at = now
    if outcome.stored:
        image_take_stored_copy(image, outcome, now=now)
        image.verified_at = now
        return RepairOutcome(image_id=image.pk, repaired=True)
    reason = f"{previous_problem}; repair failed: {outcome.error}" if previous_problem else outcome.error
    image.last_error = reason[:2000]
    if outcome.error in _SOURCE_GONE_ERRORS and image.status != ImageStatus.STORED:
        # Lost rows are never repaired again by --repair: no retry loop against a source that is gone.
        image.status = ImageStatus.LOST
        return RepairOutcome(image_id=image.pk, repaired=False, lost=True, reason=reason)
    return RepairOutcome(image_id=image.pk, repaired=False, reason=reason)


def image_repair_rows(
    *, rows: list[Image], previous_problems: list[str], pool: ContextThreadPool, session, storage: Storage
) -> RepairBatch:
    """Repair the rows on the pool and write every outcome in one bulk_update.

    A storage that refuses an upload is kept (the first one) and not raised yet: what the other
    downloads did is written first, so nothing already stored is forgotten.
    """
    futures: list[Future] = [
        pool.submit(image_repair_download, image=row, session=session, storage=storage) for row in rows
    ]
    batch = RepairBatch(done=[])
    renditions: list[tuple[int, RenditionsOutcome]] = []
    for row, previous_problem, future in zip(rows, previous_problems, futures, strict=True):
        try:
            outcome = future.result()
        except StorageUnavailable as error:
            batch.storage_failure = batch.storage_failure or error
            continue
        batch.done.append((row, image_repair_apply(image=row, outcome=outcome, previous_problem=previous_problem)))
        if outcome.stored and outcome.renditions is not None:
            renditions.append((row.pk, outcome.renditions))
    if batch.done:
        Image.objects.bulk_update([row for row, _ in batch.done], REPAIR_FIELDS)
        image_renditions_record(renditions)
    return batch


@dataclass
class RepairSummary:
    selected: int = 0
    stored: int = 0
    failed: int = 0
    lost: int = 0
    reasons: list[str] = field(default_factory=list)


def image_repair(
    *, image_ids: Iterable[int], storage: Storage | None = None, workers: int | None = None
) -> RepairSummary:
    """Repair the given images from their source_url, whatever their state (lost ones too).

    Raises FetchAlreadyRunning while another download run is going and StorageUnavailable when
    the storage cannot take the uploads (the images finished before stay written).
    """
    storage = storage or default_storage
    workers = workers or settings.IMAGE_FETCH_WORKERS
    summary = RepairSummary()
    with image_fetch_lock():
        storage_check(storage=storage)
        rows = list(Image.objects.filter(pk__in=list(image_ids)).order_by("pk"))
        summary.selected = len(rows)
        session = outbound_session(OutboundPolicy.from_settings(pool_size=workers))
        try:
            with ContextThreadPool(
                max_workers=min(workers, max(1, len(rows))), thread_name_prefix="image-repair"
            ) as pool:
                batch = image_repair_rows(
                    rows=rows, previous_problems=[""] * len(rows), pool=pool, session=session, storage=storage
                )
        finally:
            session.close()
        for row, result in batch.done:
            if result.repaired:
                summary.stored += 1
                logger.info("image_fetch.stored", image_id=row.pk, key=row.file.name, bytes=row.byte_size, ms=0)
            else:
                summary.failed += 1
                summary.lost += result.lost
                if len(summary.reasons) < 10:
                    summary.reasons.append(f"image {row.pk}: {result.reason}")
                logger.warning(
                    "image_fetch.failed",
                    source_url=row.source_url,
                    image_id=row.pk,
                    photo_id=row.photo_id,
                    reason=result.reason,
                    kind="repair failed",
                )
        batch.raise_storage_failure()
    return summary
