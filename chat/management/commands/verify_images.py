"""Check every stored image against its object in storage; repair and clean up when told to."""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chat.images.fetch_lock import FetchAlreadyRunning
from chat.images.monitoring import verify_images_job
from chat.images.rendition_verification import RenditionVerifySummary, image_renditions_verify
from chat.images.verification import image_verifiable_count, image_verify_all
from chat.images.verify_reports import ImageVerifySummary
from core.object_storage import StorageUnavailable
from core.progress import progress_bar, progress_enabled

MAX_WORKERS = 128


def _positive(text):
    value = int(text)
    if value < 1 or value > MAX_WORKERS:
        raise ValueError(text)
    return value


def _count(text):
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _seconds(text):
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


_positive.__name__ = f"integer from 1 to {MAX_WORKERS}"
_seconds.__name__ = "number of seconds (0 or more)"
_count.__name__ = "number of images (0 or more)"


class VerifyFailed(CommandError):
    """The run finished and found something still wrong (the cron check-in fails with it)."""


class Command(BaseCommand):
    help = "Check that every stored image's object exists with the recorded size and sha256; report orphans."

    def add_arguments(self, parser):
        parser.add_argument(
            "--repair", action="store_true", help="download missing and corrupt images again from their source"
        )
        parser.add_argument("--delete-orphans", action="store_true", help="delete objects that no image row names")
        parser.add_argument(
            "--orphan-min-age",
            type=_seconds,
            default=3600,
            help="only delete orphans older than this many seconds (default 3600: a fetch may not have written its rows yet)",
        )
        parser.add_argument(
            "--deep",
            "--read-data",
            dest="read_data",
            action="store_true",
            help="download and hash every object (default: compare the listing's size and ETag with the row's)",
        )
        parser.add_argument(
            "--deep-sample",
            type=_count,
            default=0,
            help="also download and hash this many objects chosen at random",
        )
        parser.add_argument("--progress", action="store_true", help="a progress bar on stderr even without a terminal")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
        parser.add_argument(
            "--workers",
            type=_positive,
            help=f"concurrent requests (default IMAGE_VERIFY_WORKERS, {settings.IMAGE_VERIFY_WORKERS})",
        )

    def handle(
        self,
        *args,
        repair,
        delete_orphans,
        orphan_min_age,
        read_data,
        deep_sample,
        workers,
        progress,
        no_progress,
        **options,
    ):
        self.stdout.write(
            f"Verifying stored images{' (repair)' if repair else ''}{' (delete orphans)' if delete_orphans else ''}…"
        )
        enabled = progress_enabled(progress=progress, no_progress=no_progress)
        try:
            with (
                verify_images_job() as job,
                progress_bar(
                    total=image_verifiable_count() if enabled else None,
                    unit="image",
                    description="verify",
                    enabled=enabled,
                ) as bar,
            ):

                def advance(summary: ImageVerifySummary) -> None:
                    bar.update(summary.checked - bar.n)

                summary = image_verify_all(
                    repair=repair,
                    delete_orphans=delete_orphans,
                    read_data=read_data,
                    deep_sample=deep_sample,
                    workers=workers,
                    orphan_min_age=timedelta(seconds=orphan_min_age),
                    on_batch=advance,
                )
                renditions = image_renditions_verify(repair=repair)
                for key, value in {**summary.as_log_fields(), **renditions.as_log_fields()}.items():
                    job.set_data(key, value)
                self._print_summary(summary)
                self._print_renditions(renditions)
                if not summary.clean or renditions.still_wrong:
                    # Inside the job: the cron check-in says "error" when anything is still wrong.
                    raise VerifyFailed(
                        _failure_messages(summary, renditions, repair=repair, delete_orphans=delete_orphans)
                    )
        except FetchAlreadyRunning as error:
            raise CommandError(
                f"Not started: {error} (--repair downloads and --delete-orphans deletes; run it when the fetch is done)."
            ) from error
        except StorageUnavailable as error:
            raise CommandError(
                f"Object storage did not answer: {error}. No image was marked missing because of it; run again once it is back."
            ) from error

    def _print_renditions(self, renditions: RenditionVerifySummary) -> None:
        for line in _renditions_lines(renditions):
            self.stdout.write(line)

    def _print_summary(self, summary: ImageVerifySummary) -> None:
        write = self.stdout.write
        write(self.style.SUCCESS("All images intact.") if summary.clean else self.style.WARNING("Problems found."))
        write(f"  storage:        {summary.where}")
        write(f"  checked:        {summary.checked}")
        write(
            f"  intact:         {summary.intact}"
            + (f" ({summary.back_intact} intact again)" if summary.back_intact else "")
        )
        write(f"  missing:        {summary.missing}")
        write(f"  corrupt:        {summary.corrupt}")
        if summary.repaired or summary.repair_failed:
            write(f"  repaired:       {summary.repaired}")
            write(f"  repair failed:  {summary.repair_failed} (lost, source gone: {summary.lost})")
        if summary.lost_before:
            write(
                f"  lost earlier:   {summary.lost_before} (not retried; delete them or use the admin's Repair selected)"
            )
        write(
            f"  orphans:        {summary.orphans}"
            + (f" ({summary.orphans_deleted} deleted)" if summary.orphans_deleted else "")
        )
        if summary.orphans_too_recent:
            write(f"    {summary.orphans_too_recent} newer than --orphan-min-age were kept")
        for problem in summary.problems:
            write(f"    - image {problem.image_id} ({problem.key}): {problem.state}: {problem.reason}")
        for key in summary.orphan_keys:
            write(f"    - orphan {key}")
        write(f"  seconds:        {summary.seconds:.2f}")
        write(f"  images/s:       {summary.images_per_second:.1f}")


def _renditions_lines(renditions: RenditionVerifySummary) -> list[str]:
    counts = f"{renditions.checked} checked, {renditions.intact} intact, {renditions.missing} missing"
    lines = [f"  renditions:     {counts}, {renditions.corrupt} corrupt"]
    if renditions.broken_images:
        lines.append(
            f"    rebuilt from the originals: {renditions.rebuilt_images} image(s)"
            + (f", {renditions.rebuild_failed_images} failed" if renditions.rebuild_failed_images else "")
        )
    if renditions.without_renditions:
        lines.append(f"    {renditions.without_renditions} stored image(s) have none yet (make_renditions makes them)")
    lines.extend(f"    - {problem}" for problem in renditions.problems)
    return lines


def _failure_messages(summary, renditions, *, repair: bool, delete_orphans: bool) -> str:
    messages = [] if summary.clean else [_failure_message(summary, repair=repair, delete_orphans=delete_orphans)]
    if renditions.still_wrong:
        hint = "." if repair else " (--repair rebuilds them from the originals)."
        messages.append(f"{renditions.still_wrong} rendition(s) missing or corrupt{hint}")
    return " ".join(messages)


def _failure_message(summary: ImageVerifySummary, *, repair: bool, delete_orphans: bool) -> str:
    parts = []
    if summary.still_wrong:
        parts.append(f"{summary.still_wrong} image(s) missing or corrupt")
    if summary.orphans > summary.orphans_deleted:
        parts.append(f"{summary.orphans - summary.orphans_deleted} orphan object(s)")
    hint = []
    if summary.still_wrong and not repair:
        hint.append("--repair downloads them again")
    if summary.orphans > summary.orphans_deleted and not delete_orphans:
        hint.append("--delete-orphans removes the orphans")
    return "; ".join(parts) + (f" ({'; '.join(hint)})" if hint else "") + "."
