"""The stored objects as verify_images sees them: one object checked against its row, and every key listed."""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError
from django.core.files.storage import FileSystemStorage, Storage
from storages.backends.s3 import S3Storage

from core.concurrency import ContextThreadPool
from core.deadlines import DeadlineExceeded
from core.hashing import chunks_of, sha256_of
from core.object_storage import StorageUnavailable, s3_client, storage_deadline, storage_describe

# Every image key starts with it (image_storage_key); orphans are looked for under it only.
IMAGE_KEY_PREFIX = "images/"


@dataclass(frozen=True)
class ObjectFacts:
    """What the storage says about one key: absent, or its size and the sha256 it carries or hashes to."""

    exists: bool
    byte_size: int | None = None
    sha256: str = ""
    etag: str = ""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One entry of a listing: S3's ListObjectsV2 gives size and ETag with the key, at no extra request."""

    key: str
    modified_at: datetime
    byte_size: int | None = None
    # Without quotes; empty on the file system (files carry none).
    etag: str = ""


def object_facts(
    *, storage: Storage, key: str, read_data: bool = False, expected_size: int | None = None
) -> ObjectFacts:
    """Look one key up; StorageUnavailable when the storage does not answer (never "absent" then).

    On S3 a HEAD gives the size and the sha256 written into the metadata at upload; read_data
    downloads and hashes the bytes instead, and so does an object of the expected size without
    that metadata (stored before it was written, or overwritten behind the app's back). On the
    file system the bytes are always hashed: files carry no metadata and a local read is cheap.
    """
    if isinstance(storage, S3Storage):
        facts = _s3_facts(storage, key=key, read_data=read_data)
        if facts.exists and not facts.sha256 and facts.byte_size == expected_size:
            facts = _s3_facts(storage, key=key, read_data=True)
        return facts
    if isinstance(storage, FileSystemStorage):
        return _file_facts(storage, key=key)
    raise StorageUnavailable(f"verify_images knows S3 and the file system, not {type(storage).__name__}")


def object_keys(
    *, storage: Storage, page_size: int = 1000, prefix: str = IMAGE_KEY_PREFIX
) -> Iterator[list[StoredObject]]:
    """Every object under prefix in key order (UTF-8 bytes, as S3 lists), a page at a time.

    On S3 memory stays at two pages (the next is fetched while the caller works on this one). The
    file system has no sorted listing: its keys are sorted in memory (bin/serve's single-machine
    store, not the million-object bucket).
    """
    if isinstance(storage, S3Storage):
        yield from _s3_keys(storage, page_size=page_size, prefix=prefix)
    elif isinstance(storage, FileSystemStorage):
        yield from _file_keys(storage, page_size=page_size, prefix=prefix)
    else:
        raise StorageUnavailable(f"cannot list {type(storage).__name__}")


def object_listing(
    *, storage: Storage, page_size: int = 1000, prefix: str = IMAGE_KEY_PREFIX
) -> Iterator[StoredObject]:
    """object_keys one object at a time: what a verify pass merges with its rows."""
    for page in object_keys(storage=storage, page_size=page_size, prefix=prefix):
        yield from page


def etag_normalise(etag: str | None) -> str:
    """An ETag as recorded: without the quotes S3 puts around it."""
    return (etag or "").strip().strip('"')


def object_modified_at(*, storage: Storage, key: str) -> datetime | None:
    """When the object was last written, None when it is absent; StorageUnavailable when the storage does not answer."""
    if isinstance(storage, S3Storage):
        try:
            with storage_deadline(f"HEAD {key}"):
                return s3_client(storage).head_object(Bucket=storage.bucket_name, Key=key)["LastModified"]
        except DeadlineExceeded as error:
            raise StorageUnavailable(f"{storage_describe(storage=storage)}: {error}") from error
        except ClientError as error:
            if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise StorageUnavailable(f"{storage_describe(storage=storage)} refused HEAD {key}: {error}") from error
        except BotoCoreError as error:
            raise StorageUnavailable(
                f"{storage_describe(storage=storage)} did not answer for {key}: {error}"
            ) from error
    try:
        return datetime.fromtimestamp(os.stat(storage.path(key)).st_mtime, tz=UTC)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StorageUnavailable(f"could not stat {key} in {storage_describe(storage=storage)}: {error}") from error


def object_delete(*, storage: Storage, key: str) -> None:
    try:
        with storage_deadline(f"delete of {key}"):
            storage.delete(key)
    except (BotoCoreError, ClientError, OSError, DeadlineExceeded) as error:
        raise StorageUnavailable(f"could not delete {key} from {storage_describe(storage=storage)}: {error}") from error


def _s3_facts(storage: S3Storage, *, key: str, read_data: bool) -> ObjectFacts:
    client = s3_client(storage)
    try:
        with storage_deadline(f"{'GET' if read_data else 'HEAD'} {key}"):
            if not read_data:
                head = client.head_object(Bucket=storage.bucket_name, Key=key)
                return ObjectFacts(
                    exists=True,
                    byte_size=head["ContentLength"],
                    sha256=head.get("Metadata", {}).get("sha256", ""),
                    etag=etag_normalise(head.get("ETag")),
                )
            response = client.get_object(Bucket=storage.bucket_name, Key=key)
            with response["Body"] as body:
                sha256, size = sha256_of(chunks_of(body))
            return ObjectFacts(exists=True, byte_size=size, sha256=sha256, etag=etag_normalise(response.get("ETag")))
    except DeadlineExceeded as error:
        raise StorageUnavailable(f"{storage_describe(storage=storage)}: {error}") from error
    except ClientError as error:
        details = error.response.get("Error", {})
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # Only the storage's own "no such key" means absent; any other answer says nothing about the object.
        if status == 404 or details.get("Code") in ("404", "NoSuchKey", "NotFound"):
            if details.get("Code") == "NoSuchBucket":
                raise StorageUnavailable(f"{storage_describe(storage=storage)}: the bucket does not exist") from error
            return ObjectFacts(exists=False)
        raise StorageUnavailable(
            f"{storage_describe(storage=storage)} refused HEAD {key}: {details.get('Code') or status}"
        ) from error
    except BotoCoreError as error:
        raise StorageUnavailable(
            f"{storage_describe(storage=storage)} did not answer for {key}: {type(error).__name__}: {error}"
        ) from error


def _file_facts(storage: FileSystemStorage, *, key: str) -> ObjectFacts:
    try:
        path = storage.path(key)
        with open(path, "rb") as handle:
            sha256, size = sha256_of(chunks_of(handle))
    except FileNotFoundError:
        if not os.path.isdir(storage.location):
            # The whole data folder is gone (unmounted, wrong DJANGO_MEDIA_ROOT): an outage, not 10,000 losses.
            raise StorageUnavailable(f"{storage_describe(storage=storage)}: the folder does not exist") from None
        return ObjectFacts(exists=False)
    except OSError as error:
        raise StorageUnavailable(f"could not read {key} in {storage_describe(storage=storage)}: {error}") from error
    return ObjectFacts(exists=True, byte_size=size, sha256=sha256)


def _s3_keys(storage: S3Storage, *, page_size: int, prefix: str) -> Iterator[list[StoredObject]]:
    paginator = s3_client(storage).get_paginator("list_objects_v2")
    pages = iter(
        paginator.paginate(Bucket=storage.bucket_name, Prefix=prefix, PaginationConfig={"PageSize": page_size})
    )

    def next_page():
        # Each page under its own deadline, and none held across the yield (the caller's work).
        with storage_deadline("listing a page"):
            return next(pages, None)

    # One page ahead: the next page's round trip runs while the caller works on this one (a
    # million objects are a thousand round trips). Memory: two pages.
    ahead = ContextThreadPool(max_workers=1, thread_name_prefix="listing")
    try:
        coming = ahead.submit(next_page)
        while True:
            try:
                page = coming.result()
            except ClientError as error:
                raise StorageUnavailable(f"{storage_describe(storage=storage)} refused the listing: {error}") from error
            except (BotoCoreError, DeadlineExceeded) as error:
                raise StorageUnavailable(
                    f"{storage_describe(storage=storage)} did not answer the listing: {type(error).__name__}: {error}"
                ) from error
            if page is None:
                return
            coming = ahead.submit(next_page)
            yield [
                StoredObject(
                    key=item["Key"],
                    modified_at=item["LastModified"],
                    byte_size=item.get("Size"),
                    etag=etag_normalise(item.get("ETag")),
                )
                for item in page.get("Contents", [])
            ]
    finally:
        # A caller that stops early does not wait for the page in flight (its deadline bounds it).
        ahead.shutdown(wait=False, cancel_futures=True)


def _file_keys(storage: FileSystemStorage, *, page_size: int, prefix: str) -> Iterator[list[StoredObject]]:
    root = os.path.join(storage.location, prefix)
    keys = sorted(
        os.path.relpath(os.path.join(directory, name), storage.location).replace(os.sep, "/")
        for directory, _, names in os.walk(root)
        for name in names
    )
    page: list[StoredObject] = []
    for key in keys:
        try:
            stat = os.stat(os.path.join(storage.location, key))
        except FileNotFoundError:
            continue  # removed while listing
        page.append(
            StoredObject(key=key, modified_at=datetime.fromtimestamp(stat.st_mtime, tz=UTC), byte_size=stat.st_size)
        )
        if len(page) >= page_size:
            yield page
            page = []
    if page:
        yield page
