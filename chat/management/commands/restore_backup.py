"""Restore a backup made by create_backup: the database's tables and every image object."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from chat.backups.backup import BackupError, backup_object_count, backup_restore
from core.object_storage import StorageUnavailable
from core.progress import progress_bar, progress_enabled


class Command(BaseCommand):
    help = "Replace the database's tables with a backup's dump and upload its objects; then run verify_images."

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="source", required=True, type=Path, help="the backup folder")
        parser.add_argument(
            "--yes", action="store_true", help="really replace the current data (without it: say what would happen)"
        )
        only = parser.add_mutually_exclusive_group()
        only.add_argument("--database-only", action="store_true")
        only.add_argument("--objects-only", action="store_true")
        parser.add_argument("--progress", action="store_true", help="a progress bar on stderr even without a terminal")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")

    def handle(self, *args, source, yes, database_only, objects_only, progress, no_progress, **options):
        if not yes:
            what = (
                "the database's tables"
                if database_only
                else "the objects"
                if objects_only
                else "the database's tables and the objects"
            )
            self.stdout.write(
                f"Would replace {what} with the backup in {source}. Stop the web, worker and beat first; run again with --yes."
            )
            return
        try:
            enabled = progress_enabled(progress=progress, no_progress=no_progress) and not database_only
            with progress_bar(
                total=backup_object_count(source=source) if enabled else None,
                unit="object",
                description="restore",
                enabled=enabled,
            ) as bar:
                report = backup_restore(
                    source=source,
                    database=not objects_only,
                    objects=not database_only,
                    on_object=lambda size: bar.update(1),
                )
        except (BackupError, StorageUnavailable) as error:
            raise CommandError(f"Restore failed: {error}") from error
        self.stdout.write(self.style.SUCCESS(f"Restored {report.path}"))
        if report.database_file:
            self.stdout.write(f"  database: {report.database_file}")
        if not database_only:
            self.stdout.write(f"  objects:  {report.objects} ({report.bytes} bytes)")
        self.stdout.write("Now run verify_images: it checks every restored row against its object.")
