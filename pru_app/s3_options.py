"""django-storages' S3 options, built in one place for the settings and the tests."""

from botocore.config import Config as BotoConfig


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
