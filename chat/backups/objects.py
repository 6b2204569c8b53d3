"""The bucket half of a backup: every image object and rendition mirrored into a folder with a manifest, and put back.

Incremental: an object the previous backup holds with the same key, size and ETag (on the file
system: the same modification time) is the same bytes, so its file is hard-linked from the
previous folder with the previous manifest's sha256 instead of downloaded again. Each folder stays
a whole backup on its own (restore reads one folder), and deleting a folder deletes no bytes that
another folder links: the file system frees a file with its last link.
"""

import json
import mimetypes
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from botocore.exceptions import BotoCoreError, ClientError
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage
from storages.backends.s3 import S3Storage

from chat.backups.errors import BackupError
from chat.images.objects import IMAGE_KEY_PREFIX, StoredObject, etag_normalise, object_keys
from chat.images.rendition_names import RENDITION_KEY_PREFIX
from core.concurrency import ContextThreadPool
from core.deadlines import DeadlineExceeded
from core.hashing import chunks_of, sha256_of
from core.object_storage import s3_client, storage_deadline

MANIFEST = "manifest.jsonl"
OBJECTS = "objects"


@dataclass(frozen=True)
class ObjectCopy:
    key: str
    size: int
    sha256: str
    content_type: str
    metadata: dict
    # What tells the same bytes without reading them: the S3 ETag, or the file's modification time.
    version: str = ""


@dataclass
class MirrorCounts:
    objects: int = 0
    bytes: int = 0
    copied: int = 0
    linked: int = 0
    linked_from: str = ""


def objects_mirror(
    *,
    storage: Storage,
    directory: Path,
    previous: Path | None = None,
    workers: int = 16,
    on_object: Callable[[int], None] = lambda size: None,
) -> MirrorCounts:
    """Every image object into directory/objects/<key>, listed in the manifest in key order.

    previous: a finished backup folder; what it holds unchanged is hard-linked, not downloaded.
    on_object(size) is called once per object (progress).
    """
    target = directory / OBJECTS
    counts = MirrorCounts(linked_from=previous.name if previous else "")
    earlier = _PreviousManifest(previous)
    with (directory / MANIFEST).open("w") as manifest, ContextThreadPool(max_workers=workers) as executor:
        # A page of keys at a time: memory holds one page's copies, whatever the bucket's size.
        # Renditions too: their rows come back with the database and must name objects that exist.
        for page in _item_pages(storage):
            pending: list[ObjectCopy | Future] = []
            for item in page:
                linked = earlier.link(item, target=target)
                pending.append(linked or executor.submit(_download, storage, item, target))
            for entry in pending:
                copy = entry if isinstance(entry, ObjectCopy) else entry.result()
                if isinstance(entry, ObjectCopy):
                    counts.linked += 1
                else:
                    counts.copied += 1
                manifest.write(json.dumps(copy.__dict__) + "\n")
                counts.objects, counts.bytes = counts.objects + 1, counts.bytes + copy.size
                on_object(copy.size)
    earlier.close()
    return counts


@dataclass(frozen=True)
class _MirrorItem:
    """A listed object to mirror: version tells the same bytes without reading them ("" : unknown, always copied)."""

    key: str
    byte_size: int | None
    version: str


def object_version(item: StoredObject) -> str:
    """What changes when an object's bytes change: its ETag on S3, its modification time on the file system."""
    return f"etag:{item.etag}" if item.etag else f"mtime:{item.modified_at.isoformat()}"


def _item_pages(storage: Storage) -> Iterator[list[_MirrorItem]]:
    # The originals, then their renditions (renditions/ sorts after images/, so the whole stays in key order).
    for prefix in (IMAGE_KEY_PREFIX, RENDITION_KEY_PREFIX):
        for page in object_keys(storage=storage, prefix=prefix):
            yield [_MirrorItem(key=item.key, byte_size=item.byte_size, version=object_version(item)) for item in page]


class _PreviousManifest:
    """The previous backup's manifest read alongside the listing: both are in key order, so memory holds one line."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.handle = (folder / MANIFEST).open() if folder is not None and (folder / MANIFEST).is_file() else None
        self.lines: Iterator[str] = iter(self.handle) if self.handle else iter(())
        self.current: ObjectCopy | None = self._next()

    def _next(self) -> ObjectCopy | None:
        for line in self.lines:
            if line.strip():
                return ObjectCopy(**json.loads(line))
        return None

    def link(self, item: _MirrorItem, *, target: Path) -> ObjectCopy | None:
        """The previous copy of item hard-linked into target when it is the same bytes; None to download it."""
        while self.current is not None and self.current.key < item.key:
            self.current = self._next()
        previous = self.current
        if (
            self.folder is None
            or previous is None
            or previous.key != item.key
            or previous.size != item.byte_size
            or not previous.version
            or previous.version != item.version
        ):
            return None
        source = _safe_path(self.folder / OBJECTS, item.key)
        path = _safe_path(target, item.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, path)
        except OSError:
            # Gone from the previous folder, another file system, too many links: download it instead.
            return None
        return previous

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def manifest_count(*, directory: Path) -> int:
    """Objects a backup folder's manifest lists (a progress bar's total)."""
    path = directory / MANIFEST
    if not path.is_file():
        return 0
    with path.open() as manifest:
        return sum(1 for line in manifest if line.strip())


def objects_restore(
    *, storage: Storage, directory: Path, workers: int = 16, on_object: Callable[[int], None] = lambda size: None
) -> tuple[int, int]:
    """Upload every object of the manifest (its bytes checked against it first); (objects, bytes)."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise BackupError(f"{manifest_path} not found: not a backup made by create_backup")
    count = total = 0
    with manifest_path.open() as manifest, ContextThreadPool(max_workers=workers) as executor:
        while True:
            batch = [ObjectCopy(**json.loads(line)) for line in _take(manifest, 500)]
            if not batch:
                break
            for copy in executor.map(lambda copy: _upload(storage, copy, directory / OBJECTS), batch):
                count, total = count + 1, total + copy.size
                on_object(copy.size)
    return count, total


def _safe_path(root: Path, key: str) -> Path:
    # Keys come from the bucket: one with ".." or a leading "/" must not write outside the backup.
    parts = PurePosixPath(key).parts
    if not parts or key.startswith("/") or ".." in parts:
        raise BackupError(f"refusing object key {key!r}: not a relative path")
    return root.joinpath(*parts)


def _download(storage: Storage, item: _MirrorItem, root: Path) -> ObjectCopy:
    key = item.key
    path = _safe_path(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    content_type, metadata, version = "", {}, item.version
    try:
        # A wall-clock bound on each object's copy, however slowly the storage sends it.
        with storage_deadline(f"backup of {key}"):
            if isinstance(storage, S3Storage):
                client = s3_client(storage)
                response = client.get_object(Bucket=storage.bucket_name, Key=key)
                content_type, metadata = response.get("ContentType", ""), response.get("Metadata", {})
                # The ETag of the bytes read (the object may have changed since it was listed).
                version = f"etag:{etag_normalise(response.get('ETag'))}"
                body = response["Body"]
            else:
                body = storage.open(key, "rb")
            with body, partial.open("wb") as out:
                sha256, size = sha256_of(chunks_of(body), sink=out.write)
    except (BotoCoreError, ClientError, OSError, DeadlineExceeded) as error:
        partial.unlink(missing_ok=True)
        raise BackupError(f"could not copy {key}: {error}") from error
    os.replace(partial, path)
    return ObjectCopy(
        key=key,
        size=size,
        sha256=sha256,
        content_type=content_type or mimetypes.guess_type(key)[0] or "",
        metadata=metadata,
        version=version,
    )


def _upload(storage: Storage, copy: ObjectCopy, root: Path) -> ObjectCopy:
    path = _safe_path(root, copy.key)
    with path.open("rb") as handle:
        sha256, _ = sha256_of(chunks_of(handle))
    if sha256 != copy.sha256:
        raise BackupError(f"{path} does not match the manifest (sha256 {sha256[:16]}…): the backup is damaged")
    try:
        with storage_deadline(f"restore of {copy.key}"), path.open("rb") as handle:
            if isinstance(storage, S3Storage):
                client = s3_client(storage)
                client.put_object(
                    Bucket=storage.bucket_name,
                    Key=copy.key,
                    Body=handle,
                    ContentType=copy.content_type or "application/octet-stream",
                    Metadata=copy.metadata,
                )
            elif isinstance(storage, FileSystemStorage):
                saved = storage.save(copy.key, File(handle))
                if saved != copy.key:
                    raise BackupError(f"storage saved {copy.key!r} as {saved!r}: enable allow_overwrite")
            else:
                raise BackupError(f"cannot restore into {type(storage).__name__}")
    except (BotoCoreError, ClientError, OSError, DeadlineExceeded) as error:
        raise BackupError(f"could not restore {copy.key}: {error}") from error
    return copy


def _take(lines, count: int) -> list[str]:
    taken = []
    for line in lines:
        if line.strip():
            taken.append(line)
        if len(taken) >= count:
            break
    return taken
