"""Store a copy of every photo the photo API lists in object storage, beside its source URL."""

import sys
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from chat.images.fetch_lock import FetchAlreadyRunning
from chat.images.ingestion import DEFAULT_PAGE_SIZE, ImageIngestionError, image_fetch_all
from chat.images.monitoring import fetch_images_job
from chat.images.photo_api import MAX_PAGE_SIZE
from core.object_storage import StorageUnavailable, storage_describe
from core.outbound_http import UnsafeURL, check_url

MAX_WORKERS = 64


def _positive(maximum=None):
    def parse(text):
        value = int(text)
        if value < 1 or (maximum is not None and value > maximum):
            raise ValueError(text)
        return value

    parse.__name__ = f"integer from 1 to {maximum}" if maximum else "positive integer"
    return parse


class Command(BaseCommand):
    help = "Download every photo the photo API lists into object storage (S3/MinIO or MEDIA_ROOT)."

    def add_arguments(self, parser):
        parser.add_argument("--api-url", help="list endpoint of the photo API (default: IMAGE_API_URL)")
        parser.add_argument(
            "--page-size",
            type=_positive(MAX_PAGE_SIZE),
            default=DEFAULT_PAGE_SIZE,
            help=f"photos per API page (default {DEFAULT_PAGE_SIZE})",
        )
        parser.add_argument("--limit", type=_positive(), help="stop after this many listed photos")
        parser.add_argument(
            "--workers",
            type=_positive(MAX_WORKERS),
            help=f"concurrent downloads (default: IMAGE_FETCH_WORKERS, {settings.IMAGE_FETCH_WORKERS})",
        )
        parser.add_argument("--refresh", action="store_true", help="download again photos that are already stored")
        parser.add_argument("--no-progress", action="store_true", help="plain lines even on a terminal")

    def handle(self, *args, api_url, page_size, limit, workers, refresh, no_progress, **options):
        api_url = api_url or settings.IMAGE_API_URL
        try:
            check_url(api_url)
        except UnsafeURL as error:
            raise CommandError(f"--api-url {api_url!r}: {error}") from error
        workers = workers or settings.IMAGE_FETCH_WORKERS
        self.stdout.write(
            f"Fetching photos from {api_url} into {storage_describe()} "
            f"(page size {page_size}, {workers} workers{', refresh' if refresh else ''}{f', limit {limit}' if limit else ''})"
        )
        progress = _Progress(self, enabled=not no_progress and sys.stderr.isatty(), total=limit)
        try:
            # A Sentry transaction inside cron check-ins; failed photos do not fail the check-in.
            with fetch_images_job() as job:
                summary = image_fetch_all(
                    api_url=api_url,
                    page_size=page_size,
                    limit=limit,
                    workers=workers,
                    refresh=refresh,
                    on_photo=progress.photo,
                    on_page=progress.page,
                    on_total=progress.total,
                )
                for key, value in summary.as_log_fields().items():
                    job.set_data(key, value)
        except FetchAlreadyRunning as error:
            raise CommandError(f"Not started: {error}.") from error
        except StorageUnavailable as error:
            raise CommandError(f"Object storage unavailable, nothing more was stored: {error}") from error
        except ImageIngestionError as error:
            raise CommandError(
                f"Stopped: {error}. Photos stored before this stay stored; run again to resume."
            ) from error
        finally:
            progress.close()
        self._print_summary(summary)
        if summary.failed:
            raise CommandError(f"{summary.failed} photo(s) failed; they are retried on the next run.")

    def _print_summary(self, summary):
        write = self.stdout.write
        write(self.style.SUCCESS("Done.") if not summary.failed else self.style.WARNING("Done, with failures."))
        write(f"  pages:          {summary.pages}")
        write(f"  photos seen:    {summary.seen}")
        write(f"  newly stored:   {summary.stored}")
        write(f"  already stored: {summary.already_stored}")
        if summary.duplicates:
            write(f"  duplicates:     {summary.duplicates} (listed more than once; stored once)")
        if summary.lost:
            write(
                f"  lost:           {summary.lost} (verify_images found the copy gone and the source too; not retried)"
            )
        kinds = ", ".join(f"{kind}: {count}" for kind, count in summary.failure_kinds.most_common())
        write(f"  failed:         {summary.failed}" + (f" ({kinds})" if kinds else ""))
        for failure in summary.failures:
            write(f"    - {failure.source_url or f'photo {failure.photo_id}'}: {failure.reason}")
        if summary.failed > len(summary.failures):
            write(f"    … and {summary.failed - len(summary.failures)} more (see the image_fetch.failed log events)")
        write(f"  bytes:          {summary.bytes}")
        write(f"  seconds:        {summary.seconds:.2f}")
        write(f"  photos/s:       {summary.photos_per_second:.1f}")


class _Progress:
    """A tqdm bar on a terminal; one plain line per page otherwise."""

    def __init__(self, command, *, enabled, total):
        self.command = command
        self.lock = threading.Lock()
        self.bar = tqdm(total=total, unit="photo", file=sys.stderr, dynamic_ncols=True) if enabled else None

    def photo(self, kind):
        # Called from worker threads.
        if self.bar is not None:
            with self.lock:
                self.bar.update(1)

    def total(self, total_photos):
        # The API's count is a hint (it may change during the run); --limit, when given, wins.
        if self.bar is not None and self.bar.total is None:
            with self.lock:
                self.bar.total = total_photos
                self.bar.refresh()

    def page(self, report):
        if self.bar is not None:
            return
        self.command.stdout.write(
            f"page at offset {report.offset}: {report.listed} listed, {report.stored} stored, "
            f"{report.already_stored} already stored, {report.duplicates} duplicates, {report.failed} failed"
        )

    def close(self):
        if self.bar is not None:
            self.bar.close()
