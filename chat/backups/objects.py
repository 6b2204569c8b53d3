"""The bucket half of a backup: every image object and rendition mirrored into a folder with a manifest, and put back."""

import json
import mimetypes
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from botocore.exceptions import BotoCoreError, ClientError
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage
from storages.backends.s3 import S3Storage

from chat.backups.errors import BackupError
from chat.images.objects import object_keys
from chat.images.rendition_verification import rendition_object_pages
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


def objects_mirror(*, storage: Storage, directory: Path, workers: int = 16) -> tuple[int, int]:
    """Copy every image object into directory/objects/<key> and list it in the manifest; (objects, bytes)."""
    target = directory / OBJECTS
    count = total = 0
    with (directory / MANIFEST).open("w") as manifest, ContextThreadPool(max_workers=workers) as executor:
        # A page of keys at a time: memory holds one page's copies, whatever the bucket's size.
        # Renditions too: their rows come back with the database and must name objects that exist.
        for keys in _key_pages(storage):
            copies = executor.map(lambda key: _download(storage, key, target), keys)
            for copy in copies:
                manifest.write(json.dumps(copy.__dict__) + "\n")
                count, total = count + 1, total + copy.size
    return count, total


def _key_pages(storage: Storage) -> Iterator[list[str]]:
    for page in object_keys(storage=storage):
        yield [item.key for item in page]
    for rendition_page in rendition_object_pages(storage=storage):
        yield [item.key for item in rendition_page]


def objects_restore(*, storage: Storage, directory: Path, workers: int = 16) -> tuple[int, int]:
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
    return count, total


def _safe_path(root: Path, key: str) -> Path:
    # Keys come from the bucket: one with ".." or a leading "/" must not write outside the backup.
    parts = PurePosixPath(key).parts
    if not parts or key.startswith("/") or ".." in parts:
        raise BackupError(f"refusing object key {key!r}: not a relative path")
    return root.joinpath(*parts)


def _download(storage: Storage, key: str, root: Path) -> ObjectCopy:
    path = _safe_path(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    content_type, metadata = "", {}
    try:
        # A wall-clock bound on each object's copy, however slowly the storage sends it.
        with storage_deadline(f"backup of {key}"):
            if isinstance(storage, S3Storage):
                client = s3_client(storage)
                response = client.get_object(Bucket=storage.bucket_name, Key=key)
                content_type, metadata = response.get("ContentType", ""), response.get("Metadata", {})
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
