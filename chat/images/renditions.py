"""Renditions of stored images: made (rendition_files), stored beside the original, recorded; and the backfill.

One service, many callers: ingestion makes them in its download threads while the original is
still in hand (image_renditions_store) and records them with the page's rows
(image_renditions_record); `make_renditions`, its Celery task and verify_images' repair rebuild
them from the stored original (image_renditions_rebuild). A failure never touches the original:
the row says renditions "failed" with the reason, the log says image_renditions.failed, Sentry
gets the exception, and the page and the API fall back to the original.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO

import sentry_sdk
import structlog
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage
from django.db import transaction
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from chat.images.rendition_files import (
    RENDITION_CONTENT_TYPE,
    RenditionBytes,
    RenditionFailed,
    renditions_from_bytes,
    renditions_from_file,
)
from chat.models import Image, ImageRendition, ImageStatus, RenditionsStatus
from core.concurrency import ContextThreadPool
from core.deadlines import DeadlineExceeded
from core.object_storage import s3_client, storage_deadline, storage_describe

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StoredRendition:
    """A rendition uploaded to the storage: what its row records."""

    width: int
    height: int
    key: str
    byte_size: int
    sha256: str
    etag: str


@dataclass(frozen=True)
class RenditionsOutcome:
    """The renditions of one original (named by its sha256), or why there are none."""

    source_sha256: str
    renditions: tuple[StoredRendition, ...] = ()
    error: str = ""

    @property
    def made(self) -> bool:
        return not self.error


def image_renditions_store(*, file: IO[bytes], source_sha256: str, storage: Storage) -> RenditionsOutcome:
    """Make and upload the renditions of the original in file; any failure is the outcome's error, never raised."""
    try:
        with sentry_sdk.start_span(op="image.renditions", name=source_sha256):
            made = renditions_from_file(file, max_pixels=settings.IMAGE_FETCH_MAX_PIXELS)
            stored = tuple(rendition_upload(storage=storage, rendition=rendition) for rendition in made)
    except Exception as error:  # a bad image, libvips or the storage: the original stays usable either way
        _report_failure(error, source_sha256=source_sha256)
        return RenditionsOutcome(source_sha256=source_sha256, error=_reason(error))
    return RenditionsOutcome(source_sha256=source_sha256, renditions=stored)


def rendition_upload(*, storage: Storage, rendition: RenditionBytes) -> StoredRendition:
    """Upload one rendition under its content-addressed key; on S3 the ETag comes back with the PUT."""
    key = rendition.key
    etag = ""
    if isinstance(storage, S3Storage):
        try:
            # As the original's upload: one PutObject under the storage call's wall-clock deadline.
            with storage_deadline(f"upload of {key}"):
                response = s3_client(storage).put_object(
                    Bucket=storage.bucket_name,
                    # django-storages' own name-to-key mapping (AWS_LOCATION prefix); it has no public one.
                    Key=storage._normalize_name(clean_name(key)),
                    Body=rendition.data,
                    ContentType=RENDITION_CONTENT_TYPE,
                    Metadata={"sha256": rendition.sha256},
                )
        except (BotoCoreError, ClientError, DeadlineExceeded) as error:
            raise RenditionFailed(
                f"upload of {key} to {storage_describe(storage=storage)} failed: {type(error).__name__}: {error}"
            ) from error
        etag = response.get("ETag", "").strip('"')
    elif not storage.exists(key):
        # The key names the bytes: a file already there holds these very bytes.
        storage.save(key, ContentFile(rendition.data))
    return StoredRendition(
        width=rendition.width,
        height=rendition.height,
        key=key,
        byte_size=len(rendition.data),
        sha256=rendition.sha256,
        etag=etag,
    )


def image_renditions_record(results: Iterable[tuple[int, RenditionsOutcome]]) -> dict[str, int]:
    """Write the outcomes of many images at once: their rendition rows replaced, their state set.

    Only rows whose original is still the one the renditions were made from (same sha256) are
    written: a refresh that stored new bytes meanwhile leaves its own renditions to be made.
    Returns {"ready": n, "failed": n, "stale": n}.
    """
    results = list(results)
    counts = {"ready": 0, "failed": 0, "stale": 0}
    if not results:
        return counts
    with transaction.atomic():
        current = dict(
            Image.objects.select_for_update()
            .filter(pk__in=[image_id for image_id, _ in results])
            .values_list("pk", "sha256")
        )
        fresh = [(image_id, outcome) for image_id, outcome in results if current.get(image_id) == outcome.source_sha256]
        counts["stale"] = len(results) - len(fresh)
        ready = [(image_id, outcome) for image_id, outcome in fresh if outcome.made]
        failed = [(image_id, outcome) for image_id, outcome in fresh if not outcome.made]
        if ready:
            ready_ids = [image_id for image_id, _ in ready]
            ImageRendition.objects.filter(image_id__in=ready_ids).delete()
            ImageRendition.objects.bulk_create(
                [
                    ImageRendition(
                        image_id=image_id,
                        width=rendition.width,
                        height=rendition.height,
                        file=rendition.key,
                        content_type=RENDITION_CONTENT_TYPE,
                        byte_size=rendition.byte_size,
                        sha256=rendition.sha256,
                        etag=rendition.etag,
                    )
                    for image_id, outcome in ready
                    for rendition in outcome.renditions
                ]
            )
            Image.objects.filter(pk__in=ready_ids).update(renditions_status=RenditionsStatus.READY, renditions_error="")
        for image_id, outcome in failed:
            # Rare and each with its own reason; the renditions made before (if any) no longer match: gone.
            ImageRendition.objects.filter(image_id=image_id).delete()
            Image.objects.filter(pk=image_id).update(
                renditions_status=RenditionsStatus.FAILED, renditions_error=outcome.error[:2000]
            )
    for image_id, outcome in failed:
        logger.warning("image_renditions.failed", image_id=image_id, reason=outcome.error)
    for image_id, outcome in ready:
        logger.info("image_renditions.stored", image_id=image_id, widths=[r.width for r in outcome.renditions])
    counts["ready"], counts["failed"] = len(ready), len(failed)
    return counts


def image_renditions_rebuild_one(*, image: Image, storage: Storage) -> RenditionsOutcome:
    """Make the renditions again from the stored original (no database write)."""
    try:
        with storage.open(str(image.file.name), "rb") as original:
            data = original.read()
        made = renditions_from_bytes(data, max_pixels=settings.IMAGE_FETCH_MAX_PIXELS)
        stored = tuple(rendition_upload(storage=storage, rendition=rendition) for rendition in made)
    except Exception as error:  # the original unreadable, a bad image, the storage: reported, never raised
        _report_failure(error, source_sha256=image.sha256, image_id=image.pk)
        return RenditionsOutcome(source_sha256=image.sha256, error=_reason(error))
    return RenditionsOutcome(source_sha256=image.sha256, renditions=stored)


@dataclass
class RenditionsSummary:
    selected: int = 0
    ready: int = 0
    failed: int = 0
    stale: int = 0
    reasons: list[str] = field(default_factory=list)

    def as_log_fields(self) -> dict:
        return {"selected": self.selected, "ready": self.ready, "failed": self.failed, "stale": self.stale}


def images_needing_renditions(*, include_failed: bool = False):
    """Stored images whose renditions are not made yet (and those that failed, with include_failed)."""
    states = [RenditionsStatus.PENDING, RenditionsStatus.FAILED] if include_failed else [RenditionsStatus.PENDING]
    return Image.objects.filter(status=ImageStatus.STORED, renditions_status__in=states)


def image_renditions_rebuild(
    *,
    image_ids: Iterable[int],
    storage: Storage | None = None,
    workers: int = 2,
    batch_size: int = 50,
    on_image: Callable[[str], None] | None = None,
) -> RenditionsSummary:
    """Make and record the renditions of the given stored images from their stored originals, a batch at a time.

    Safe to run again and alongside ingestion: keys are content-addressed and a row is only
    written when its original is still the one read. on_image(kind) after each image.
    """
    storage = storage or default_storage
    on_image = on_image or (lambda kind: None)
    ids = sorted(set(image_ids))
    summary = RenditionsSummary(selected=0)
    logger.info("image_renditions.backfill_started", images=len(ids))
    # libvips runs its own threads per image; a few images at once keep both busy without thrashing.
    with ContextThreadPool(max_workers=max(1, workers), thread_name_prefix="image-renditions") as pool:
        for start in range(0, len(ids), batch_size):
            rows = list(
                Image.objects.filter(pk__in=ids[start : start + batch_size], status=ImageStatus.STORED).only(
                    "id", "file", "sha256"
                )
            )
            summary.selected += len(rows)
            outcomes = list(pool.map(lambda row: image_renditions_rebuild_one(image=row, storage=storage), rows))
            counts = image_renditions_record(zip([row.pk for row in rows], outcomes, strict=True))
            summary.ready += counts["ready"]
            summary.failed += counts["failed"]
            summary.stale += counts["stale"]
            for row, outcome in zip(rows, outcomes, strict=True):
                if not outcome.made and len(summary.reasons) < 10:
                    summary.reasons.append(f"image {row.pk}: {outcome.error}")
                on_image("ready" if outcome.made else "failed")
    logger.info("image_renditions.backfill_finished", **summary.as_log_fields())
    return summary


def image_renditions_backfill(
    *,
    include_failed: bool = False,
    limit: int | None = None,
    storage: Storage | None = None,
    workers: int = 2,
    batch_size: int = 50,
    on_total: Callable[[int], None] | None = None,
    on_image: Callable[[str], None] | None = None,
) -> RenditionsSummary:
    """Renditions for every stored image without them (images stored before renditions existed).

    Keyset batches by id: memory stays at one batch however many images wait.
    """
    candidates = images_needing_renditions(include_failed=include_failed)
    total = candidates.count()
    if on_total is not None:
        on_total(total if limit is None else min(total, limit))
    summary = RenditionsSummary()
    after_id = 0
    remaining = limit
    while remaining is None or remaining > 0:
        size = batch_size if remaining is None else min(batch_size, remaining)
        ids = list(candidates.filter(pk__gt=after_id).order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            break
        after_id = ids[-1]
        if remaining is not None:
            remaining -= len(ids)
        part = image_renditions_rebuild(
            image_ids=ids, storage=storage, workers=workers, batch_size=batch_size, on_image=on_image
        )
        summary.selected += part.selected
        summary.ready += part.ready
        summary.failed += part.failed
        summary.stale += part.stale
        summary.reasons.extend(part.reasons[: max(0, 10 - len(summary.reasons))])
    return summary


def _reason(error: Exception) -> str:
    if isinstance(error, RenditionFailed):
        return str(error)[:2000]
    return f"{type(error).__name__}: {error}"[:2000]


def _report_failure(error: Exception, *, source_sha256: str, image_id: int | None = None) -> None:
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("image.renditions", "failed")
        scope.set_context("image", {"id": image_id, "sha256": source_sha256})
        sentry_sdk.capture_exception(error)
