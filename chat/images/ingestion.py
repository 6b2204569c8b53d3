"""Image ingestion: every photo the API lists, downloaded concurrently, validated and kept in object storage."""

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from datetime import datetime

import requests
import sentry_sdk
import structlog
from django.conf import settings
from django.core.files.storage import Storage, default_storage
from django.utils import timezone

from chat.images.fetch_lock import image_fetch_lock
from chat.images.fetch_reports import ImageFetchSummary, PageReport
from chat.images.photo_api import PhotoApiBadResponse, PhotoApiClient, PhotoApiError, PhotoPage
from chat.images.renditions import image_renditions_record
from chat.images.storing import (
    STORED_COPY_FIELDS,
    PhotoOutcome,
    download_limits,
    image_store_one,
    image_take_stored_copy,
)
from chat.models import Image, ImageStatus, RenditionsStatus
from core.concurrency import ContextThreadPool, fewer_gil_handoffs
from core.object_storage import storage_check
from core.outbound_http import OutboundPolicy, outbound_session

logger = structlog.get_logger(__name__)

DEFAULT_PAGE_SIZE = 100
# Pages whose downloads may be under way at once: the next page's photos are
# queued while the previous page finishes, and memory stays at about two pages.
PAGES_IN_FLIGHT = 2
_FIELDS_WRITTEN = ["photo_id", "title", "description", "api_user_id", *STORED_COPY_FIELDS, "attempts", "updated_at"]


class ImageIngestionError(Exception):
    """The run stopped; everything stored before it stays stored."""


class PhotoSourceError(ImageIngestionError):
    """A page of the photo API could not be read."""


def image_fetch_all(
    *,
    api_url: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    limit: int | None = None,
    workers: int | None = None,
    refresh: bool = False,
    storage: Storage | None = None,
    on_photo: Callable[[str], None] | None = None,
    on_page: Callable[[PageReport], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ImageFetchSummary:
    """Store a copy of every listed photo that is not stored yet (all of them with refresh).

    on_photo(kind) is called from worker threads as each photo finishes, on_page(report)
    after each page's rows are written, on_total(n) once with the API's own count (a hint).
    Raises PhotoSourceError or StorageUnavailable when the run cannot go on (the pages
    finished before stay written), FetchAlreadyRunning when another run is going.
    """
    api_url = api_url or settings.IMAGE_API_URL
    workers = workers or settings.IMAGE_FETCH_WORKERS
    if page_size < 1 or workers < 1 or (limit is not None and limit < 1):
        raise ValueError("page_size, workers and limit must be positive")
    storage = storage or default_storage
    # Two overlapping runs would download the same photos twice; the second says so and stops.
    with image_fetch_lock():
        return _fetch_locked(
            api_url=api_url,
            page_size=page_size,
            limit=limit,
            workers=workers,
            refresh=refresh,
            storage=storage,
            on_photo=on_photo,
            on_page=on_page,
            on_total=on_total,
        )


def _fetch_locked(
    *, api_url, page_size, limit, workers, refresh, storage, on_photo, on_page, on_total
) -> ImageFetchSummary:
    summary = ImageFetchSummary(source=api_url)
    clock = time.monotonic()
    logger.info(
        "image_fetch.started", source=api_url, page_size=page_size, limit=limit, workers=workers, refresh=refresh
    )
    storage_check(storage=storage)
    client = PhotoApiClient(
        list_url=api_url,
        session=outbound_session(OutboundPolicy.from_settings(pool_size=2)),
        deadline_seconds=settings.IMAGE_API_PAGE_DEADLINE,
    )
    session = outbound_session(OutboundPolicy.from_settings(pool_size=workers))
    try:
        with fewer_gil_handoffs(), ContextThreadPool(max_workers=workers, thread_name_prefix="image-fetch") as executor:
            run = _Run(
                summary=summary,
                storage=storage,
                refresh=refresh,
                session=session,
                executor=executor,
                on_photo=on_photo or (lambda kind: None),
                on_page=on_page or (lambda report: None),
                on_total=on_total or (lambda total: None),
            )
            run.go(client=client, page_size=page_size, limit=limit)
    finally:
        session.close()
        client.session.close()
        summary.seconds = time.monotonic() - clock
        logger.info("image_fetch.finished", source=api_url, **summary.as_log_fields())
    return summary


@dataclass
class _PageBatch:
    report: PageReport
    jobs: list[tuple[Image, Future]]


@dataclass
class _Run:
    summary: ImageFetchSummary
    storage: Storage
    refresh: bool
    session: requests.Session
    executor: ContextThreadPool
    on_photo: Callable[[str], None]
    on_page: Callable[[PageReport], None]
    on_total: Callable[[int], None]
    started_at: datetime = field(default_factory=timezone.now)
    urls_in_flight: set[str] = field(default_factory=set)

    def go(self, *, client: PhotoApiClient, page_size: int, limit: int | None) -> None:
        in_flight: deque[_PageBatch] = deque()
        try:
            for page in _pages(client, page_size=page_size, limit=limit):
                in_flight.append(self.start_page(page))
                while len(in_flight) >= PAGES_IN_FLIGHT:
                    _raise_if_any(self.finish_page(in_flight.popleft()))
        except PhotoApiError as error:
            # Keep what the downloads already under way store.
            _raise_if_any(self._drain(in_flight))
            raise PhotoSourceError(f"photo API: {error}") from error
        except BaseException:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self._drain(in_flight)
            raise
        _raise_if_any(self._drain(in_flight))

    def _drain(self, in_flight: deque) -> Exception | None:
        first_error = None
        while in_flight:
            first_error = first_error or self.finish_page(in_flight.popleft())
        return first_error

    def start_page(self, page: PhotoPage) -> _PageBatch:
        """Look the page's photos up (one query) and queue the downloads of those not stored yet."""
        summary = self.summary
        if summary.pages == 0 and page.total_photos is not None:
            self.on_total(page.total_photos)
        summary.pages += 1
        summary.seen += page.entry_count
        report = PageReport(offset=page.offset, listed=page.entry_count)
        logger.info("image_fetch.page", offset=page.offset, count=page.entry_count)
        for entry in page.rejected:
            self._fail(
                report, source_url=entry.url, photo_id=None, image_id=None, reason=entry.reason, kind="invalid entry"
            )

        photos = {}
        for photo in page.photos:
            if photo.url in photos or photo.url in self.urls_in_flight:
                report.duplicates += 1
                self.on_photo("duplicate")
            else:
                photos[photo.url] = photo
        rows = {image.source_url: image for image in Image.objects.filter(source_url__in=list(photos))}

        jobs = []
        for url, photo in photos.items():
            # New photos get their row only with their outcome: no row ever waits for a download.
            image = rows.get(url) or Image(source_url=url, status=ImageStatus.PENDING)
            if self._done_this_run(image):
                report.duplicates += 1
                self.on_photo("duplicate")
            elif image.status == ImageStatus.STORED and not self.refresh:
                report.already_stored += 1
                self.on_photo("already stored")
            elif image.status == ImageStatus.LOST and not self.refresh:
                # verify_images found its copy gone and the source 404: not retried on every run.
                report.lost += 1
                self.on_photo("lost")
            else:
                self.urls_in_flight.add(url)
                future = self.executor.submit(
                    image_store_one,
                    photo=photo,
                    session=self.session,
                    storage=self.storage,
                    limits=download_limits(),
                    renditions_ready_for=_renditions_ready_for(image),
                )
                future.add_done_callback(self._photo_done)
                jobs.append((image, future))
        summary.duplicates += report.duplicates
        summary.already_stored += report.already_stored
        summary.lost += report.lost
        return _PageBatch(report=report, jobs=jobs)

    def finish_page(self, batch: _PageBatch) -> Exception | None:
        """Wait for the page's downloads and write every outcome in one upsert; the error that stops the run, if any."""
        fatal = None
        done: list[tuple[Image, PhotoOutcome]] = []
        for image, future in batch.jobs:
            self.urls_in_flight.discard(image.source_url)
            try:
                done.append((image, future.result()))
            except CancelledError:
                continue
            except Exception as error:  # StorageUnavailable or a bug: stops the run once the rest is written
                fatal = fatal or error
        now = timezone.now()
        for image, outcome in done:
            _apply(image, outcome, now=now)
        if done:
            # INSERT … ON CONFLICT (source_url) DO UPDATE: new rows and known ones in one
            # statement (two when both kinds are present), the ids coming back for the logs.
            Image.objects.bulk_create(
                [image for image, _ in done],
                update_conflicts=True,
                unique_fields=["source_url"],
                update_fields=_FIELDS_WRITTEN,
            )
            image_renditions_record(
                (image.pk, outcome.renditions) for image, outcome in done if outcome.renditions is not None
            )
        report = batch.report
        for image, outcome in done:
            if outcome.stored:
                report.stored += 1
                self.summary.stored += 1
                self.summary.bytes += outcome.byte_size
                logger.info(
                    "image_fetch.stored", image_id=image.pk, key=outcome.key, bytes=outcome.byte_size, ms=outcome.ms
                )
            else:
                self._fail(
                    report,
                    source_url=image.source_url,
                    photo_id=image.photo_id,
                    image_id=image.pk,
                    reason=outcome.error,
                    kind=outcome.error_kind,
                )
        self.on_page(report)
        return fatal

    def _done_this_run(self, image: Image) -> bool:
        """Listed again after this run already stored it or gave up on it."""
        if image.status == ImageStatus.STORED:
            return image.stored_at is not None and image.stored_at >= self.started_at
        return (
            image.status == ImageStatus.FAILED and image.updated_at is not None and image.updated_at >= self.started_at
        )

    def _fail(self, report, *, source_url, photo_id, image_id, reason, kind) -> None:
        report.failed += 1
        self.summary.add_failure(source_url=source_url, photo_id=photo_id, reason=reason, kind=kind)
        logger.warning(
            "image_fetch.failed", source_url=source_url, image_id=image_id, photo_id=photo_id, reason=reason, kind=kind
        )
        if image_id is None:
            self.on_photo("failed")

    def _photo_done(self, future: Future) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            self.on_photo("stored" if future.result().stored else "failed")


def _renditions_ready_for(image: Image) -> str:
    """The sha256 of a stored image whose renditions are made: a refresh that finds the same bytes keeps them."""
    if image.status == ImageStatus.STORED and image.renditions_status == RenditionsStatus.READY:
        return image.sha256
    return ""


def _raise_if_any(error: Exception | None) -> None:
    if error is not None:
        raise error


def _apply(image: Image, outcome: PhotoOutcome, *, now) -> None:
    """The row's new state; a stored row is only ever marked stored after its upload finished."""
    photo = outcome.photo
    image.photo_id, image.title, image.description, image.api_user_id = (
        photo.photo_id,
        photo.title,
        photo.description,
        photo.user_id,
    )
    image.attempts += 1
    image.updated_at = now
    if outcome.stored:
        image_take_stored_copy(image, outcome, now=now)
    else:
        image.last_error = outcome.error[:2000]
        # A refresh that fails keeps the copy stored before (and a lost row stays lost); others are failed.
        if image.status not in (ImageStatus.STORED, ImageStatus.LOST):
            image.status = ImageStatus.FAILED


def _pages(client: PhotoApiClient, *, page_size: int, limit: int | None):
    """Pages from the API, stopping after `limit` listed entries."""
    remaining = limit
    offset = 0
    previous_ids = None
    while remaining is None or remaining > 0:
        size = page_size if remaining is None else min(page_size, remaining)
        with sentry_sdk.start_span(op="photo_api.page", name=f"offset={offset} limit={size}"):
            page = client.page(offset=offset, limit=size)
        if page.entry_count == 0:
            return
        ids = [photo.photo_id for photo in page.photos]
        if ids and ids == previous_ids:
            # Without this an API that ignores offset would be paged forever.
            raise PhotoApiBadResponse(f"the page at offset {offset} repeats the previous page: offset ignored?")
        previous_ids = ids
        if remaining is not None and page.entry_count > remaining:
            page.photos = page.photos[: max(0, remaining - len(page.rejected))]
        yield page
        offset += page.entry_count
        if remaining is not None:
            remaining -= page.entry_count
