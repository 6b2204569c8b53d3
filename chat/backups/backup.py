"""Backups: the database (pg_dump) and every image object (a folder mirror) in one dated folder, and their restore.

Incremental and kept for a while: each backup hard-links what the newest finished backup in the
same destination already holds (chat.backups.objects), and after a backup finishes the oldest
finished backups beyond the last `keep` are deleted (chat.backups.retention).
"""

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from django.core.files.storage import Storage, default_storage
from django.utils import timezone

from chat.backups.database import database_dump, database_restore
from chat.backups.errors import BackupError
from chat.backups.objects import manifest_count, objects_mirror, objects_restore
from chat.backups.retention import COMPLETE_MARKER, backups_finished, backups_prune
from chat.images.fetch_lock import FetchAlreadyRunning, image_fetch_lock
from core.object_storage import storage_check, storage_describe, storage_ensure_bucket

logger = structlog.get_logger(__name__)

__all__ = ["COMPLETE_MARKER", "BackupError", "BackupReport", "backup_create", "backup_object_count", "backup_restore"]


@dataclass
class BackupReport:
    path: Path
    database_file: str = ""
    objects: int = 0
    bytes: int = 0
    # Downloaded from the storage, and hard-linked from the previous backup (linked_from).
    copied: int = 0
    linked: int = 0
    linked_from: str = ""
    pruned: list[str] = field(default_factory=list)
    seconds: float = 0.0


def backup_create(
    *,
    destination: Path,
    name: str | None = None,
    database: bool = True,
    objects: bool = True,
    existing_dump: bool = False,
    keep: int = 0,
    storage: Storage | None = None,
    on_object: Callable[[int], None] = lambda size: None,
) -> BackupReport:
    """A new folder destination/<name or UTC time> with database.dump and objects/ + manifest.jsonl.

    Objects the newest finished backup in destination holds unchanged are hard-linked from it.
    keep: once this backup is finished, delete the oldest finished backups beyond the newest keep
    (0 keeps all). on_object(size) is called per object mirrored (progress).

    The database is dumped first: every row in the dump then names an object the mirror copies
    (an object stored later is an orphan after a restore, which verify_images reports). Both run
    under the fetch lock: no fetch, repair or orphan delete rewrites or removes an object between
    the dump and the mirror (BackupError while one is going).
    existing_dump: database.dump is already in the folder, made just before by the server's own
    pg_dump (compose's backup-database service: the app image's client is older than the server).
    """
    storage = storage or default_storage
    started = time.monotonic()
    folder = Path(destination) / (name or timezone.now().strftime("%Y%m%dT%H%M%SZ"))
    dump = folder / "database.dump"
    if existing_dump:
        if not dump.is_file():
            raise BackupError(f"{dump} not found: run the database dump first")
        if (folder / COMPLETE_MARKER).exists() or (folder / "objects").exists():
            raise BackupError(f"{folder} already holds a backup: choose another name")
    elif folder.exists() and any(folder.iterdir()):
        raise BackupError(f"{folder} exists and is not empty: choose another --name")
    report = BackupReport(path=folder)
    with _no_fetch_running("backup"):
        folder.mkdir(parents=True, exist_ok=True)
        logger.info("backup.started", path=str(folder), where=storage_describe(storage=storage))
        if existing_dump:
            report.database_file = dump.name
        elif database:
            report.database_file = database_dump(directory=folder).name
        if objects:
            storage_check(storage=storage)
            previous = next((done for done in backups_finished(destination=Path(destination)) if done != folder), None)
            counts = objects_mirror(storage=storage, directory=folder, previous=previous, on_object=on_object)
            report.objects, report.bytes = counts.objects, counts.bytes
            report.copied, report.linked, report.linked_from = counts.copied, counts.linked, counts.linked_from
    report.seconds = time.monotonic() - started
    (folder / COMPLETE_MARKER).write_text(
        json.dumps(
            {
                "created_at": timezone.now().isoformat(),
                "database_file": report.database_file,
                "objects": report.objects if objects else None,
                "bytes": report.bytes,
                "copied": report.copied,
                "linked": report.linked,
                "linked_from": report.linked_from,
                "storage": storage_describe(storage=storage),
            },
            indent=2,
        )
        + "\n"
    )
    logger.info(
        "backup.finished",
        path=str(folder),
        objects=report.objects,
        bytes=report.bytes,
        copied=report.copied,
        linked=report.linked,
        linked_from=report.linked_from,
        seconds=round(report.seconds, 3),
    )
    if keep:
        report.pruned = backups_prune(destination=Path(destination), keep=keep, current=folder)
    return report


def backup_object_count(*, source: Path) -> int:
    """Objects a backup folder holds (a progress bar's total)."""
    return manifest_count(directory=Path(source))


def backup_restore(
    *,
    source: Path,
    database: bool = True,
    objects: bool = True,
    storage: Storage | None = None,
    on_object: Callable[[int], None] = lambda size: None,
) -> BackupReport:
    """Put a backup back: the database's tables replaced by the dump's, every object uploaded (bytes checked)."""
    storage = storage or default_storage
    started = time.monotonic()
    folder = Path(source)
    marker = folder / COMPLETE_MARKER
    if not marker.is_file():
        raise BackupError(f"{folder} has no {COMPLETE_MARKER}: not a finished backup")
    recorded = json.loads(marker.read_text())
    report = BackupReport(path=folder)
    logger.info("backup.restore_started", path=str(folder), where=storage_describe(storage=storage))
    if objects:
        if recorded.get("objects") is None:
            raise BackupError(f"{folder} holds no objects (made with --database-only)")
        storage_ensure_bucket(storage=storage)
        # Not alongside a fetch, repair or orphan delete, which write the objects restored here. The
        # database part closes this session (pg_restore needs its tables), and with it the lock: the
        # web, the workers and beat must be stopped by the operator first (docs/backup.md).
        with _no_fetch_running("restore"):
            report.objects, report.bytes = objects_restore(storage=storage, directory=folder, on_object=on_object)
    if database:
        if not recorded.get("database_file"):
            raise BackupError(f"{folder} holds no database dump (made with --objects-only)")
        report.database_file = database_restore(directory=folder).name
    report.seconds = time.monotonic() - started
    logger.info(
        "backup.restored",
        path=str(folder),
        objects=report.objects,
        bytes=report.bytes,
        seconds=round(report.seconds, 3),
    )
    return report


@contextmanager
def _no_fetch_running(what: str) -> Iterator[None]:
    """Hold the fetch lock for the block; BackupError when a fetch, repair or orphan delete holds it."""
    try:
        with image_fetch_lock():
            yield
    except FetchAlreadyRunning as error:  # only the lock raises it: nothing in the block fetches
        raise BackupError(f"{error}: the {what} waits for it to finish (run it again then)") from error
