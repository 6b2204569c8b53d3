"""Which backup folders are finished, and deleting the oldest beyond the last N.

A folder is a finished backup once its backup.json is written (last). Only finished folders are
ever deleted, oldest first by the time backup.json records, and never the one just made: a folder
without the marker may be a backup still running. Deleting a folder loses no object another
backup holds: shared objects are hard links, and the file system frees the bytes with the last one.
"""

import json
import shutil
from pathlib import Path

import structlog

from chat.backups.errors import BackupError

logger = structlog.get_logger(__name__)

# Written last: a folder without it is a backup that did not finish, and restore refuses it.
COMPLETE_MARKER = "backup.json"


def backups_finished(*, destination: Path) -> list[Path]:
    """The finished backup folders in destination, newest first (by the creation time each recorded)."""
    if not destination.is_dir():
        return []
    found = []
    for folder in destination.iterdir():
        marker = folder / COMPLETE_MARKER
        if not folder.is_dir() or folder.is_symlink() or not marker.is_file():
            continue
        try:
            created = json.loads(marker.read_text())["created_at"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not one of ours, or damaged: never chosen, never deleted
        found.append((created, folder.name, folder))
    return [folder for _, _, folder in sorted(found, reverse=True)]


def backups_prune(*, destination: Path, keep: int, current: Path) -> list[str]:
    """Delete the finished backups beyond the newest keep (current always kept); the names deleted."""
    if keep < 1:
        raise BackupError("keep must be at least 1 (0 means: keep every backup, prune nothing)")
    finished = backups_finished(destination=destination)
    kept = [folder for folder in finished if folder == current] + [folder for folder in finished if folder != current]
    deleted = []
    for folder in kept[keep:]:
        # The marker first: a half-deleted folder is then never taken for a finished backup.
        (folder / COMPLETE_MARKER).unlink()
        shutil.rmtree(folder)
        deleted.append(folder.name)
        logger.info("backup.pruned", path=str(folder))
    return deleted
