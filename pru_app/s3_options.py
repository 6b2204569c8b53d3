"""django-storages' S3 options, built in one place for the settings and the tests."""

from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig

# Every object the service writes (an image is at most IMAGE_FETCH_MAX_BYTES, 20 MiB by default) is one
# PutObject: that request runs under the caller's wall-clock deadline (core.deadlines), where a
# multipart upload's parts would run in s3transfer's own threads, outside it. S3 takes up to 5 GiB in one PUT.
SINGLE_PUT_UP_TO = 64 * 1024 * 1024


def s3_storage_options(
    *,
    bucket_name: str,
    endpoint_url: str | None,
    access_key: str | None,
    secret_key: str | None,
    region_name: str,
    querystring_expire: int = 300,
    connect_timeout: int = 5,
    read_timeout: int = 30,
    max_attempts: int = 3,
    max_pool_connections: int = 32,
    single_put_up_to: int = SINGLE_PUT_UP_TO,
) -> dict:
    """The OPTIONS of the S3 default storage: private, path-style, SigV4, deterministic keys."""
    return {
        "bucket_name": bucket_name,
        "endpoint_url": endpoint_url,
        "access_key": access_key,
        "secret_key": secret_key,
        "region_name": region_name,
        "addressing_style": "path",
        "signature_version": "s3v4",
        "default_acl": None,
        "querystring_auth": True,
        "querystring_expire": querystring_expire,
        # Deterministic keys: a re-run overwrites its own object instead of
        # leaving a second copy with a random suffix.
        "file_overwrite": True,
        "transfer_config": TransferConfig(multipart_threshold=single_put_up_to),
        # Newer boto3 defaults break several S3-compatible stores (django-storages #1482).
        # With a client_config, django-storages ignores its addressing_style and
        # signature_version options: they must be set here (else SigV2 presigned URLs).
        "client_config": BotoConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=max_pool_connections,
        ),
    }
