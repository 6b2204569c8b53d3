"""Object storage as the services see it: reachable or not, the bucket present and private, its S3 client."""

from contextlib import AbstractContextManager

import structlog
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files.storage import Storage, default_storage
from storages.backends.s3 import S3Storage

from core.deadlines import DeadlineExceeded, DeadlineScope, deadline_scope

logger = structlog.get_logger(__name__)


class StorageUnavailable(Exception):
    """Object storage cannot be reached or used (endpoint down, bucket missing, credentials refused)."""


def storage_deadline(what: str = "storage call") -> AbstractContextManager[DeadlineScope]:
    """A wall-clock bound (STORAGE_CALL_DEADLINE) on the storage calls in the block, however slowly the server answers."""
    return deadline_scope(settings.STORAGE_CALL_DEADLINE, what=what)


def s3_client(storage: S3Storage):
    """The storage's boto3 client: the one shared across threads when the backend has it (core.s3_backend)."""
    return getattr(storage, "shared_client", None) or storage.connection.meta.client


def storage_describe(*, storage: Storage | None = None) -> str:
    """Where files go, for messages: "s3 bucket 'x' at http://…" or the media directory."""
    storage = storage or default_storage
    if isinstance(storage, S3Storage):
        return f"S3 bucket {storage.bucket_name!r} at {storage.endpoint_url or 'AWS'}"
    return f"file system at {getattr(storage, 'location', '?')}"


def storage_check(*, storage: Storage | None = None) -> None:
    """Raise StorageUnavailable unless the bucket answers (the file system always does)."""
    storage = storage or default_storage
    if not isinstance(storage, S3Storage):
        return
    client = s3_client(storage)
    try:
        with storage_deadline("storage check"):
            client.head_bucket(Bucket=storage.bucket_name)
    except (BotoCoreError, ClientError, DeadlineExceeded) as error:
        raise StorageUnavailable(f"{storage_describe(storage=storage)} is not usable: {_reason(error)}") from error


def storage_ensure_bucket(*, storage: Storage | None = None) -> str:
    """Create the private bucket when it is missing: "created", "exists" or "file-system". Idempotent."""
    storage = storage or default_storage
    if not isinstance(storage, S3Storage):
        return "file-system"
    client = s3_client(storage)
    where = storage_describe(storage=storage)
    try:
        client.head_bucket(Bucket=storage.bucket_name)
        return "exists"
    except ClientError as error:
        if _status(error) != 404:
            raise StorageUnavailable(f"{where} is not usable: {_reason(error)}") from error
    except BotoCoreError as error:
        raise StorageUnavailable(f"{where} is unreachable: {_reason(error)}") from error

    # No ACL and no policy: a new bucket is private on S3 and MinIO alike.
    arguments = {"Bucket": storage.bucket_name}
    region = client.meta.region_name
    if region and region != "us-east-1":
        arguments["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**arguments)
    except ClientError as error:
        # Another start-up created it in between: that is what we wanted.
        if error.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return "exists"
        raise StorageUnavailable(f"could not create {where}: {_reason(error)}") from error
    except BotoCoreError as error:
        raise StorageUnavailable(f"could not create {where}: {_reason(error)}") from error
    logger.info("storage.bucket_created", bucket=storage.bucket_name)
    return "created"


def _status(error: ClientError) -> int | None:
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _reason(error: Exception) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = details.get("Code") or _status(error)
        return f"{code} {details.get('Message', '')}".strip()
    return f"{type(error).__name__}: {error}"
