"""Back up the database (pg_dump) and every image object (mirrored into a folder)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chat.backups.backup import BackupError, backup_create
from core.object_storage import StorageUnavailable
from core.progress import progress_bar, progress_enabled


def _keep(text):
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


_keep.__name__ = "number of backups (0: keep all)"


class Command(BaseCommand):
    help = "Write a backup folder <dir>/<UTC time>: database.dump (pg_dump) and objects/ with manifest.jsonl."

    def add_arguments(self, parser):
        parser.add_argument("--to", required=True, type=Path, help="folder that receives the backup folder")
        parser.add_argument("--name", help="the backup folder's name (default: the UTC time)")
        parser.add_argument(
            "--existing-dump",
            action="store_true",
            help="the folder already holds database.dump, made by the server's own pg_dump (compose's backup-database)",
        )
        only = parser.add_mutually_exclusive_group()
        only.add_argument("--database-only", action="store_true")
        only.add_argument("--objects-only", action="store_true")
        parser.add_argument(
            "--keep",
            type=_keep,
            default=settings.BACKUP_KEEP,
            help=f"finished backups to keep in --to; older ones are deleted after this one (default BACKUP_KEEP, "
            f"{settings.BACKUP_KEEP}; 0 keeps all)",
        )
        parser.add_argument("--progress", action="store_true", help="a progress bar on stderr even without a terminal")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")

    def handle(
        self, *args, to, name, existing_dump, database_only, objects_only, keep, progress, no_progress, **options
    ):
        if existing_dump and not name:
            raise CommandError("--existing-dump needs --name: the folder the dump is in")
        try:
            with progress_bar(
                total=None,
                unit="object",
                description="backup",
                enabled=progress_enabled(progress=progress, no_progress=no_progress),
            ) as bar:
                report = backup_create(
                    destination=to,
                    name=name,
                    database=not objects_only,
                    objects=not database_only,
                    existing_dump=existing_dump,
                    keep=keep,
                    on_object=lambda size: bar.update(1),
                )
        except (BackupError, StorageUnavailable) as error:
            raise CommandError(f"Backup failed, nothing was marked complete: {error}") from error
        self.stdout.write(self.style.SUCCESS(f"Backup written to {report.path}"))
        if report.database_file:
            self.stdout.write(f"  database: {report.database_file}")
        if not database_only:
            self.stdout.write(f"  objects:  {report.objects} ({report.bytes} bytes)")
            linked = f", {report.linked} linked from {report.linked_from}" if report.linked_from else ""
            self.stdout.write(f"  copied:   {report.copied}{linked}")
        if report.pruned:
            self.stdout.write(f"  pruned:   {', '.join(report.pruned)} (beyond the last {keep})")
        self.stdout.write(f"  seconds:  {report.seconds:.2f}")
