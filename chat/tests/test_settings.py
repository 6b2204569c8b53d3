"""Production settings: refuse to start without a secret, and pass Django's deploy checks."""

import pytest

from chat.tests.subprocess_helpers import run_manage

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "pru_app.settings",
    "DJANGO_SECRET_KEY": "a-long-random-production-like-value-" + "x9Qz" * 12,
    "DJANGO_ALLOWED_HOSTS": "pru.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://pru.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
}


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = run_manage("check", env_overrides=PRODUCTION_ENV, drop=["DJANGO_SECRET_KEY"])
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is missing" in result.stderr


def test_debug_is_off_unless_asked():
    result = run_manage(
        "shell", "-c", "from django.conf import settings; print(settings.DEBUG)", env_overrides=PRODUCTION_ENV
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("False")


def test_debug_mode_runs_without_any_configuration():
    result = run_manage("check", env_overrides={"DJANGO_SETTINGS_MODULE": "pru_app.settings", "DJANGO_DEBUG": "true"})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("with_storage", [False, True], ids=["file-system", "s3"])
def test_check_deploy_passes_with_production_values(with_storage):
    env = dict(PRODUCTION_ENV)
    if with_storage:
        env.update(
            AWS_STORAGE_BUCKET_NAME="pru-images",
            AWS_S3_ENDPOINT_URL="http://minio:9000",
            AWS_ACCESS_KEY_ID="pru-app",
            AWS_SECRET_ACCESS_KEY="not-a-real-secret-value",
        )
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env_overrides=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_image_is_uploaded_in_one_request_under_its_deadline():
    """Multipart parts would run in s3transfer's threads, outside the storage call's wall-clock deadline."""
    from django.conf import settings as django_settings
    from django.core.files.storage import storages

    storage = storages["default"]
    threshold = getattr(storage, "transfer_config", None)
    if threshold is None:  # the file-system storage of a run without S3
        return
    assert threshold.multipart_threshold > django_settings.IMAGE_FETCH_MAX_BYTES
