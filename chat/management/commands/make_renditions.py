"""Make the WebP renditions of stored images that have none (images stored before renditions existed)."""

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from chat.images.renditions import image_renditions_backfill

MAX_WORKERS = 16


def _positive(text):
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


_positive.__name__ = "positive integer"


class Command(BaseCommand):
    help = "Make the renditions (WebP at 320, 640, 1280 px) of stored images that have none, from their originals."

    def add_arguments(self, parser):
        parser.add_argument("--retry-failed", action="store_true", help="also images whose renditions failed before")
        parser.add_argument("--limit", type=_positive, help="stop after this many images")
        parser.add_argument("--workers", type=_positive, default=2, help="images made at once (default 2)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")

    def handle(self, *args, retry_failed, limit, workers, no_progress, **options):
        if workers > MAX_WORKERS:
            raise CommandError(f"--workers must be at most {MAX_WORKERS}")
        bar = tqdm(unit="image", desc="renditions", file=sys.stderr, disable=no_progress or not sys.stderr.isatty())

        def on_total(total):
            bar.total = total
            bar.refresh()

        try:
            summary = image_renditions_backfill(
                include_failed=retry_failed,
                limit=limit,
                workers=workers,
                on_total=on_total,
                on_image=lambda kind: bar.update(1),
            )
        finally:
            bar.close()
        self.stdout.write(
            f"Renditions: {summary.selected} image(s), {summary.ready} ready, {summary.failed} failed"
            + (f", {summary.stale} replaced meanwhile (left for their own run)" if summary.stale else "")
        )
        for reason in summary.reasons:
            self.stdout.write(f"  - {reason}")
        if summary.failed:
            raise CommandError(
                f"{summary.failed} image(s) have no renditions; their originals are served. "
                "Fix the cause, then run again with --retry-failed."
            )
