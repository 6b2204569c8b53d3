"""Block until the database accepts connections, or fail after a timeout."""

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.db.utils import OperationalError


class Command(BaseCommand):
    help = "Wait until the database accepts connections (used by the start scripts)."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=60.0, help="Seconds to wait before failing (default 60).")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between attempts (default 1).")
        parser.add_argument("--database", default="default")

    def handle(self, *args, timeout, interval, database, **options):
        connection = connections[database]
        deadline = time.monotonic() + timeout
        attempts = 0
        while True:
            attempts += 1
            try:
                connection.ensure_connection()
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
            except OperationalError as error:
                connection.close()
                if time.monotonic() + interval > deadline:
                    raise CommandError(
                        f"Database {database!r} still unreachable after {timeout:g}s ({attempts} attempts): {error}".strip()
                    ) from error
                self.stderr.write(f"Database unavailable, retrying in {interval:g}s…")
                time.sleep(interval)
            else:
                self.stdout.write(self.style.SUCCESS(f"Database {database!r} is ready after {attempts} attempt(s)."))
                return
