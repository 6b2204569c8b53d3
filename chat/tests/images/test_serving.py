"""/stored-images/<pk>: staff only, in its three serving modes, against moto's S3 server over HTTP."""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from chat.models import ImageStatus

pytestmark = pytest.mark.django_db

JPEG = b"\xff\xd8\xff\xe0 pretend jpeg bytes \xff\xd9"


@pytest.fixture
def stored_image(make_image):
    counter = iter(range(1, 1000))

    def make(storage, body=JPEG):
        key = storage.save(f"images/{next(counter)}-test.jpg", ContentFile(body))
        return make_image(status=ImageStatus.STORED, file=key, content_type="image/jpeg", stored_at=timezone.now())

    return make


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw-for-tests-only", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_image"))
    client.force_login(user)
    return client


def url_for(image):
    return reverse("chat:stored_image", args=[image.pk])


@pytest.mark.parametrize("mode", ["x-accel", "stream", "presigned"])
def test_anonymous_visitors_get_no_image_in_any_mode(client, s3_storage, stored_image, settings, mode):
    settings.IMAGE_SERVE_MODE = mode
    response = client.get(url_for(stored_image(s3_storage)))
    assert response.status_code == 403
    assert "X-Accel-Redirect" not in response and "Location" not in response
    assert JPEG not in response.content


def test_logged_in_users_who_are_not_staff_get_no_image(client, django_user_model, s3_storage, stored_image, settings):
    settings.IMAGE_SERVE_MODE = "stream"
    client.force_login(django_user_model.objects.create_user("someone", password="pw-for-tests-only"))
    assert client.get(url_for(stored_image(s3_storage))).status_code == 403


def test_staff_without_image_or_message_permissions_get_no_image(client, django_user_model, s3_storage, stored_image):
    client.force_login(django_user_model.objects.create_user("bare", password="pw-for-tests-only", is_staff=True))
    assert client.get(url_for(stored_image(s3_storage))).status_code == 403


def test_stream_mode_sends_the_stored_bytes_to_staff(staff, s3_storage, stored_image, settings):
    settings.IMAGE_SERVE_MODE = "stream"
    response = staff.get(url_for(stored_image(s3_storage)))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == JPEG
    assert response["Content-Type"] == "image/jpeg"
    assert response["Cache-Control"] == "private, max-age=300"
    assert "sandbox" in response["Content-Security-Policy"]


def test_x_accel_mode_hands_nginx_a_url_signed_for_the_internal_endpoint(
    staff, s3_storage, s3_server, stored_image, settings
):
    settings.IMAGE_SERVE_MODE = "x-accel"
    image = stored_image(s3_storage)
    response = staff.get(url_for(image))
    assert response.status_code == 200 and response.content == b""
    assert response["Content-Type"] == "image/jpeg"
    redirect = urlsplit(response["X-Accel-Redirect"])
    assert redirect.path == f"/internal-storage/{s3_storage.bucket_name}/{image.file.name}"
    query = parse_qs(redirect.query)
    assert query["X-Amz-Expires"] == ["60"]
    assert "host" in query["X-Amz-SignedHeaders"][0].split(";")
    # What nginx does with it: forward path and query to the endpoint the URL was signed for.
    forwarded = requests.get(
        s3_server.endpoint_url + redirect.path.removeprefix("/internal-storage") + "?" + redirect.query
    )
    assert forwarded.status_code == 200 and forwarded.content == JPEG


def test_presigned_mode_redirects_to_a_short_lived_url_for_the_public_endpoint(
    staff, s3_storage, s3_server, stored_image, settings
):
    settings.IMAGE_SERVE_MODE = "presigned"
    public = s3_server.endpoint_url.replace("127.0.0.1", "localhost")
    settings.AWS_S3_PUBLIC_ENDPOINT_URL = public
    image = stored_image(s3_storage)
    response = staff.get(url_for(image))
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}" == public
    assert location.path == f"/{s3_storage.bucket_name}/{image.file.name}"
    query = parse_qs(location.query)
    assert query["X-Amz-Expires"] == ["300"]
    assert "host" in query["X-Amz-SignedHeaders"][0].split(";")
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert response["Cache-Control"] == "private, no-store"
    assert requests.get(response["Location"]).content == JPEG


def test_an_image_that_is_not_stored_is_not_found(staff, s3_storage, make_image, settings):
    settings.IMAGE_SERVE_MODE = "stream"
    pending = make_image(status=ImageStatus.PENDING)
    failed = make_image(status=ImageStatus.FAILED, last_error="HTTP 404")
    assert staff.get(url_for(pending)).status_code == 404
    assert staff.get(url_for(failed)).status_code == 404
    assert staff.get(reverse("chat:stored_image", args=[999_999])).status_code == 404


@pytest.mark.parametrize("mode", ["stream", "presigned"])
def test_the_file_system_storage_is_streamed_without_x_accel(staff, stored_image, settings, tmp_path, mode):
    settings.IMAGE_SERVE_MODE = mode
    settings.MEDIA_ROOT = str(tmp_path)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"allow_overwrite": True}},
    }
    from django.core.files.storage import default_storage

    response = staff.get(url_for(stored_image(default_storage)))
    assert response.status_code == 200 and "X-Accel-Redirect" not in response
    assert b"".join(response.streaming_content) == JPEG


def test_the_file_system_storage_in_x_accel_mode_hands_nginx_the_path_below_media_root(
    staff, stored_image, settings, tmp_path
):
    settings.IMAGE_SERVE_MODE = "x-accel"
    settings.MEDIA_ROOT = str(tmp_path)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"allow_overwrite": True}},
    }
    from django.core.files.storage import default_storage

    image = stored_image(default_storage)
    response = staff.get(url_for(image))
    assert response.status_code == 200 and response.content == b""
    assert response["X-Accel-Redirect"] == f"/internal-media/{image.file.name}"
    assert (tmp_path / image.file.name).read_bytes() == JPEG


def test_only_get_is_allowed(staff, s3_storage, stored_image):
    assert staff.post(url_for(stored_image(s3_storage))).status_code == 405
