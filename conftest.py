"""Fixtures shared by every test package: moto's S3 server, S3-backed default storage, the local photo API."""

import uuid

import pytest

from devservers.photo_api import PhotoApiServer
from devservers.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from pru_app.s3_options import s3_storage_options as build_s3_storage_options


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server over HTTP on a loopback port, for the whole session."""
    with S3Server() as server:
        yield server


def s3_storage_options(*, endpoint_url: str, bucket_name: str) -> dict:
    """django-storages S3 options as pru_app.settings builds them, for a given endpoint and bucket."""
    return build_s3_storage_options(
        bucket_name=bucket_name,
        endpoint_url=endpoint_url,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region_name=REGION,
        connect_timeout=2,
        read_timeout=10,
        max_attempts=2,
    )


@pytest.fixture
def s3_storage(s3_server, settings):
    """A fresh private bucket, and Django's default storage switched to django-storages' S3 backend on it."""
    if not s3_server.running:
        s3_server.start()  # a test may have stopped it to simulate an outage
    bucket = s3_server.create_bucket(f"test-{uuid.uuid4().hex[:12]}")
    settings.AWS_STORAGE_BUCKET_NAME = bucket
    settings.AWS_S3_ENDPOINT_URL = s3_server.endpoint_url
    settings.AWS_ACCESS_KEY_ID = ACCESS_KEY
    settings.AWS_SECRET_ACCESS_KEY = SECRET_KEY
    settings.USE_S3_STORAGE = True
    # Assigning STORAGES fires setting_changed, which drops Django's cached storage instances.
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "core.s3_backend.SharedClientS3Storage",
            "OPTIONS": s3_storage_options(endpoint_url=s3_server.endpoint_url, bucket_name=bucket),
        },
    }
    from django.core.files.storage import storages

    yield storages["default"]


@pytest.fixture
def photo_api():
    """The local photo API (30 small photos by default); tests change its knobs as they need."""
    with PhotoApiServer() as server:
        yield server
