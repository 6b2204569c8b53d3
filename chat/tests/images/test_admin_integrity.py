"""The Images list's integrity column, filter and the "Verify selected" / "Repair selected" actions, for real."""

import hashlib

import pytest
from django.urls import reverse

from chat.images.ingestion import image_fetch_all
from chat.models import Image, ImageStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("keeper", "keeper@example.com", "pw-for-tests-only"))
    return client


@pytest.fixture
def four_stored(photo_api, s3_storage, settings):
    settings.IMAGE_SERVE_MODE = "stream"
    settings.IMAGE_FETCH_RETRIES = 1
    photo_api.listing = [1, 2, 3, 4]
    image_fetch_all(api_url=photo_api.url, workers=2)
    return {image.photo_id: image for image in Image.objects.all()}


def run_action(staff_client, action, images):
    return staff_client.post(
        reverse("admin:chat_image_changelist"),
        {"action": action, "_selected_action": [image.pk for image in images]},
        follow=True,
    )


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


def test_verify_selected_marks_exactly_the_damaged_image_and_the_list_filters_and_shows_it(
    staff_client, four_stored, s3_server, s3_storage
):
    damaged = four_stored[2]
    s3_server.client().delete_object(Bucket=s3_storage.bucket_name, Key=damaged.file.name)
    url = reverse("admin:chat_image_changelist")
    assert "never" in staff_client.get(url).content.decode()  # stored, not verified yet

    response = run_action(staff_client, "verify_selected", [four_stored[1], damaged])
    assert messages_of(response) == [
        'Verified 2 image(s): 1 intact, 1 missing, 0 corrupt. "Repair selected" downloads them again.'
    ]
    damaged.refresh_from_db()
    assert damaged.status == ImageStatus.MISSING and damaged.verified_at is not None
    assert Image.objects.filter(status=ImageStatus.STORED, verified_at__isnull=True).count() == 2  # not selected

    missing_page = staff_client.get(url, {"integrity": "missing"}).content.decode()
    assert (
        missing_page.count('name="_selected_action"') == 1 and "Missing" in missing_page and "not found" in missing_page
    )
    # Its thumbnail is a dash: a missing row is never served as stored.
    assert f'src="{reverse("chat:stored_image", args=[damaged.pk])}"' not in missing_page
    assert staff_client.get(url, {"integrity": "intact"}).content.decode().count('name="_selected_action"') == 1
    assert staff_client.get(url, {"integrity": "unverified"}).content.decode().count('name="_selected_action"') == 2


def test_repair_selected_downloads_a_missing_image_hash_equal(
    staff_client, four_stored, s3_server, s3_storage, photo_api
):
    damaged = four_stored[3]
    client = s3_server.client()
    client.delete_object(Bucket=s3_storage.bucket_name, Key=damaged.file.name)
    run_action(staff_client, "verify_selected", [damaged])
    photo_api.reset_log()

    response = run_action(staff_client, "repair_selected", [damaged])
    assert messages_of(response) == ["Repaired 1 of 1 image(s); 0 failed."]
    assert len(photo_api.image_requests()) == 1
    damaged.refresh_from_db()
    body = client.get_object(Bucket=s3_storage.bucket_name, Key=damaged.file.name)["Body"].read()
    assert damaged.status == ImageStatus.STORED and hashlib.sha256(body).hexdigest() == damaged.sha256


def test_repair_selected_reports_a_source_that_is_gone(staff_client, four_stored, s3_server, s3_storage, photo_api):
    damaged = four_stored[4]
    s3_server.client().delete_object(Bucket=s3_storage.bucket_name, Key=damaged.file.name)
    run_action(staff_client, "verify_selected", [damaged])
    photo_api.set_photo_fault(4, "missing")
    response = run_action(staff_client, "repair_selected", [damaged])
    [text] = messages_of(response)
    assert text.startswith("Repaired 0 of 1 image(s); 1 failed (1 lost: the source no longer has them).")
    damaged.refresh_from_db()
    assert damaged.status == ImageStatus.LOST


def test_verify_selected_during_a_storage_outage_says_so_and_marks_nothing(
    staff_client, photo_api, s3_storage, settings
):
    from devservers.s3 import S3Server

    settings.IMAGE_FETCH_RETRIES = 1
    with S3Server() as outage:
        outage.create_bucket(s3_storage.bucket_name)
        options = {**settings.STORAGES["default"]["OPTIONS"], "endpoint_url": outage.endpoint_url}
        settings.STORAGES = {**settings.STORAGES, "default": {**settings.STORAGES["default"], "OPTIONS": options}}
        photo_api.listing = [1, 2]
        image_fetch_all(api_url=photo_api.url, workers=2)
        outage.stop()
        response = run_action(staff_client, "verify_selected", list(Image.objects.all()))
    [text] = messages_of(response)
    assert text.startswith("Object storage did not answer; nothing was marked:")
    assert set(Image.objects.values_list("status", flat=True)) == {ImageStatus.STORED}
    assert not Image.objects.filter(verified_at__isnull=False).exists()
