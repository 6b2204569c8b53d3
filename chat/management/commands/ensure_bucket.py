"""Create the private storage bucket when it is missing (run at start-up; safe to repeat)."""

import time

from django.core.management.base import BaseCommand, CommandError

from core.object_storage import StorageUnavailable, storage_describe, storage_ensure_bucket


class Command(BaseCommand):
    help = "Create the private object-storage bucket when it is missing. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument(
            "--wait",
            type=float,
            default=0.0,
            help="seconds to keep retrying while the storage is unreachable (default 0)",
        )
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between attempts (default 1)")

    def handle(self, *args, wait, interval, **options):
        where = storage_describe()
        deadline = time.monotonic() + wait
        while True:
            try:
                outcome = storage_ensure_bucket()
            except StorageUnavailable as error:
                if time.monotonic() + interval > deadline:
                    raise CommandError(f"Object storage unavailable: {error}") from error
                self.stderr.write(f"Storage unavailable, retrying in {interval:g}s…")
                time.sleep(interval)
                continue
            break
        if outcome == "created":
            self.stdout.write(self.style.SUCCESS(f"Created {where} (private)."))
        elif outcome == "exists":
            self.stdout.write(f"{where} already exists.")
        else:
            self.stdout.write(f"No bucket to create: files go to the {where}.")
