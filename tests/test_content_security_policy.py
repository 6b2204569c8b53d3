"""The pages' Content-Security-Policy: the storage's public origin for images in presigned mode, and only then."""

from chat.tests.subprocess_helpers import run_manage

BASE_ENV = {
    "DJANGO_SETTINGS_MODULE": "pru_app.settings",
    "DJANGO_SECRET_KEY": "csp-test-" + "c" * 60,
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
    "AWS_STORAGE_BUCKET_NAME": "pru-images",
    "AWS_S3_ENDPOINT_URL": "http://minio:9000",
    "AWS_S3_PUBLIC_ENDPOINT_URL": "https://images.example.com:8443/some/path",
    "AWS_ACCESS_KEY_ID": "pru-app",
    "AWS_SECRET_ACCESS_KEY": "a-real-storage-secret-value",
}


def _image_sources(**env) -> list[str]:
    result = run_manage(
        "shell",
        "-c",
        "from django.conf import settings; print('img-src:', *settings.SECURE_CSP['img-src'])",
        env_overrides=BASE_ENV | env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.rpartition("img-src:")[2].split()


def test_images_come_from_our_origin_only_unless_presigned():
    # x-accel and stream both serve the bytes from our origin.
    assert _image_sources(IMAGE_SERVE_MODE="x-accel") == ["'self'", "data:", "blob:"]


def test_presigned_mode_allows_the_public_storage_origin_for_images():
    assert _image_sources(IMAGE_SERVE_MODE="presigned") == [
        "'self'",
        "data:",
        "blob:",
        "https://images.example.com:8443",
    ]


def test_presigned_mode_without_a_public_endpoint_allows_the_internal_one():
    assert _image_sources(IMAGE_SERVE_MODE="presigned", AWS_S3_PUBLIC_ENDPOINT_URL="")[-1] == "http://minio:9000"


def test_pages_carry_the_policy_from_django(client):
    policy = client.get("/admin/login/")["Content-Security-Policy"]
    assert policy == (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
