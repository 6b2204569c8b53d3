"""Renditions checked by listing, as rclone check does: the bucket's renditions/ listing (size, ETag) against the rows.

Rows and listing are walked side by side in key order (a merge join): one ListObjectsV2 page per
1,000 objects, no request per object, memory of two pages and one batch of rows whatever the count.
A rendition missing or not the bytes recorded is rebuilt from its image's original with repair.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from django.core.files.storage import Storage, default_storage
from django.db import connection
from django.db.models.functions import Collate

from chat.images.objects import object_listing
from chat.images.rendition_names import RENDITION_KEY_PREFIX
from chat.images.renditions import image_renditions_rebuild
from chat.models import Image, ImageRendition, ImageStatus, RenditionsStatus

logger = structlog.get_logger(__name__)


@dataclass
class RenditionVerifySummary:
    checked: int = 0
    intact: int = 0
    missing: int = 0
    corrupt: int = 0
    # Stored images whose renditions were never made or failed (make_renditions makes them).
    without_renditions: int = 0
    broken_images: int = 0
    rebuilt_images: int = 0
    rebuild_failed_images: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def still_wrong(self) -> int:
        """Renditions found wrong and not rebuilt (all of them unless every broken image was rebuilt)."""
        return 0 if self.rebuilt_images >= self.broken_images else self.missing + self.corrupt

    def as_log_fields(self) -> dict:
        return {
            "renditions_checked": self.checked,
            "renditions_intact": self.intact,
            "renditions_missing": self.missing,
            "renditions_corrupt": self.corrupt,
            "images_without_renditions": self.without_renditions,
            "renditions_rebuilt_images": self.rebuilt_images,
            "renditions_rebuild_failed_images": self.rebuild_failed_images,
        }


def image_renditions_verify(
    *,
    storage: Storage | None = None,
    repair: bool = False,
    batch_size: int = 2_000,
    on_rendition: Callable[[str], None] | None = None,
) -> RenditionVerifySummary:
    """Compare every recorded rendition with the bucket's listing; with repair, rebuild the wrong ones' images.

    Raises StorageUnavailable when the listing fails (nothing is called missing then).
    """
    storage = storage or default_storage
    on_rendition = on_rendition or (lambda state: None)
    summary = RenditionVerifySummary()
    broken_images: set[int] = set()
    listing = object_listing(storage=storage, prefix=RENDITION_KEY_PREFIX)
    current = next(listing, None)
    # Key order as S3 lists it (bytes): PostgreSQL's "C" collation whatever the database's default;
    # SQLite (bin/serve) compares bytes already.
    key_order = Collate("file", "C") if connection.vendor == "postgresql" else "file"
    rows = (
        ImageRendition.objects.filter(image__status=ImageStatus.STORED)
        .order_by(key_order, "id")
        .values_list("file", "byte_size", "etag", "image_id")
        .iterator(chunk_size=batch_size)
    )
    for key, byte_size, etag, image_id in rows:
        while current is not None and current.key < key:
            current = next(listing, None)  # an object no row names (another image's, or an orphan)
        summary.checked += 1
        if current is None or current.key != key:
            state, reason = "missing", "not in the bucket"
        elif current.byte_size != byte_size:
            state, reason = "corrupt", f"{current.byte_size} bytes, {byte_size} recorded"
        elif etag and current.etag and current.etag != etag:
            state, reason = "corrupt", f"ETag {current.etag}, {etag} recorded"
        else:
            state, reason = "intact", ""
        on_rendition(state)
        if state == "intact":
            summary.intact += 1
            continue
        setattr(summary, state, getattr(summary, state) + 1)
        broken_images.add(image_id)
        if len(summary.problems) < 20:
            summary.problems.append(f"image {image_id} ({key}): {state}: {reason}")
        logger.warning("image_renditions.verify_problem", image_id=image_id, key=key, state=state, reason=reason)
    summary.broken_images = len(broken_images)
    summary.without_renditions = (
        Image.objects.filter(status=ImageStatus.STORED).exclude(renditions_status=RenditionsStatus.READY).count()
    )
    if repair and broken_images:
        rebuilt = image_renditions_rebuild(image_ids=broken_images, storage=storage)
        summary.rebuilt_images, summary.rebuild_failed_images = rebuilt.ready, rebuilt.failed
        summary.problems.extend(f"rebuild failed: {reason}" for reason in rebuilt.reasons)
    logger.info("image_renditions.verified", **summary.as_log_fields())
    return summary
