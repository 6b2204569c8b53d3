"""image_verify_all against moto's S3 server over HTTP, the local photo API and PostgreSQL."""

import hashlib

import pytest

from chat.images.ingestion import image_fetch_all
from chat.images.verification import image_verify_all
from chat.models import Image, ImageStatus
from core.object_storage import StorageUnavailable
from devservers.photo_api import IMAGE_PATH
from devservers.s3 import S3Server

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.IMAGE_FETCH_RETRIES = 1


@pytest.fixture
def stored(photo_api, s3_storage):
    """Twelve photos of the local photo API fetched into a fresh bucket."""
    photo_api.photos = 12
    photo_api.listing = list(range(1, 13))
    summary = image_fetch_all(api_url=photo_api.url, page_size=12, workers=4)
    assert summary.stored == 12
    return {image.photo_id: image for image in Image.objects.all()}


def client_for(s3_server, s3_storage):
    return s3_server.client(), s3_storage.bucket_name


def object_sha256(s3_server, s3_storage, key):
    client, bucket = client_for(s3_server, s3_storage)
    return hashlib.sha256(client.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()


def test_an_intact_bucket_is_clean_and_every_row_gets_its_verified_time(stored, s3_storage):
    summary = image_verify_all()
    assert (summary.checked, summary.intact, summary.missing, summary.corrupt, summary.orphans) == (12, 12, 0, 0, 0)
    assert summary.clean
    assert not Image.objects.filter(verified_at__isnull=True).exists()


def test_objects_deleted_behind_the_apps_back_are_found_exactly_and_repair_restores_them_hash_equal(
    stored, s3_storage, s3_server, photo_api
):
    client, bucket = client_for(s3_server, s3_storage)
    deleted = {stored[3], stored[7], stored[11]}
    for image in deleted:
        client.delete_object(Bucket=bucket, Key=image.file.name)

    summary = image_verify_all()
    assert (summary.checked, summary.intact, summary.missing, summary.corrupt) == (12, 9, 3, 0)
    assert not summary.clean
    missing = Image.objects.filter(status=ImageStatus.MISSING)
    assert set(missing.values_list("pk", flat=True)) == {image.pk for image in deleted}
    assert all("not found" in image.last_error and image.verified_at for image in missing)
    assert Image.objects.filter(status=ImageStatus.STORED).count() == 9

    photo_api.reset_log()
    summary = image_verify_all(repair=True)
    assert (summary.missing, summary.repaired, summary.repair_failed) == (3, 3, 0)
    assert summary.clean
    assert sorted(photo_api.image_requests()) == sorted(f"{IMAGE_PATH}{image.photo_id}.jpeg" for image in deleted)
    for image in deleted:
        image.refresh_from_db()
        assert image.status == ImageStatus.STORED and image.last_error == ""
        assert object_sha256(s3_server, s3_storage, image.file.name) == image.sha256
        assert image.sha256 == hashlib.sha256(photo_api.image_bytes(image.photo_id)).hexdigest()
    assert image_verify_all().clean


def test_an_object_overwritten_with_other_bytes_is_corrupt(stored, s3_storage, s3_server):
    client, bucket = client_for(s3_server, s3_storage)
    shorter, same_size = stored[2], stored[5]
    client.put_object(Bucket=bucket, Key=shorter.file.name, Body=b"not the photo")
    # Same length, no metadata (as a hand-made copy would be): only the bytes' hash tells.
    client.put_object(Bucket=bucket, Key=same_size.file.name, Body=b"\0" * same_size.byte_size)

    summary = image_verify_all()
    assert (summary.intact, summary.corrupt, summary.missing) == (10, 2, 0)
    shorter.refresh_from_db()
    same_size.refresh_from_db()
    assert shorter.status == same_size.status == ImageStatus.CORRUPT
    assert f"has 13 bytes, the row recorded {shorter.byte_size}" in shorter.last_error
    assert "sha256" in same_size.last_error


def test_an_object_no_row_names_is_reported_and_deleted_only_when_asked(stored, s3_storage, s3_server):
    client, bucket = client_for(s3_server, s3_storage)
    client.put_object(Bucket=bucket, Key="images/999-stray.jpg", Body=b"stray")

    summary = image_verify_all()
    assert (summary.orphans, summary.orphan_keys, summary.orphans_deleted) == (1, ["images/999-stray.jpg"], 0)
    assert not summary.clean and summary.intact == 12

    summary = image_verify_all(delete_orphans=True)  # younger than the default hour: kept
    assert (summary.orphans, summary.orphans_deleted, summary.orphans_too_recent) == (1, 0, 1)

    from datetime import timedelta

    summary = image_verify_all(delete_orphans=True, orphan_min_age=timedelta(0))
    assert (summary.orphans, summary.orphans_deleted) == (1, 1) and summary.clean
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix="images/999")


def test_storage_stopping_mid_verify_is_a_clear_error_and_marks_no_row_missing(photo_api, s3_storage, settings):
    with S3Server() as outage:
        outage.create_bucket(s3_storage.bucket_name)
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                **settings.STORAGES["default"],
                "OPTIONS": {
                    **settings.STORAGES["default"]["OPTIONS"],
                    "endpoint_url": outage.endpoint_url,
                },
            },
        }
        image_fetch_all(api_url=photo_api.url, page_size=30, workers=4)
        assert Image.objects.filter(status=ImageStatus.STORED).count() == 30

        def stop_after_first_batch(summary):
            outage.stop()

        with pytest.raises(StorageUnavailable, match=f"{outage.endpoint_url} did not answer"):
            image_verify_all(batch_size=10, workers=4, on_batch=stop_after_first_batch)
    assert Image.objects.filter(status=ImageStatus.STORED).count() == 30
    # The batches whose listing page was read before the outage stay written: the first, and the
    # second when its page (fetched one ahead) came in before the stop; the third page never does.
    assert Image.objects.filter(verified_at__isnull=False).count() in (10, 20)


def test_a_source_gone_for_good_is_lost_and_never_downloaded_again(stored, s3_storage, s3_server, photo_api):
    client, bucket = client_for(s3_server, s3_storage)
    gone, back = stored[4], stored[6]
    client.delete_object(Bucket=bucket, Key=gone.file.name)
    client.delete_object(Bucket=bucket, Key=back.file.name)
    photo_api.set_photo_fault(4, "missing")
    photo_api.set_photo_fault(6, "server-error", status=503, times=5)

    summary = image_verify_all(repair=True)
    assert (summary.missing, summary.repaired, summary.repair_failed, summary.lost) == (2, 0, 2, 1)
    gone.refresh_from_db()
    back.refresh_from_db()
    assert gone.status == ImageStatus.LOST and "HTTP 404" in gone.last_error
    # A server error is not "gone": it stays missing and the next repair tries again.
    assert back.status == ImageStatus.MISSING and "HTTP 503" in back.last_error

    photo_api.clear_photo_fault(6)
    photo_api.reset_log()
    summary = image_verify_all(repair=True)
    assert (summary.repaired, summary.lost, summary.lost_before) == (1, 0, 1)
    assert photo_api.image_requests() == [f"{IMAGE_PATH}6.jpeg"]
    # fetch_images lists photo 4 again and leaves it alone too.
    photo_api.reset_log()
    fetched = image_fetch_all(api_url=photo_api.url, page_size=12, workers=2)
    assert (fetched.lost, fetched.already_stored) == (1, 11)
    assert photo_api.image_requests() == []


def test_a_missing_row_is_never_served_as_stored(stored, s3_storage, s3_server, admin_client):
    client, bucket = client_for(s3_server, s3_storage)
    image = stored[9]
    client.delete_object(Bucket=bucket, Key=image.file.name)
    image_verify_all()
    settings_mode = admin_client.get(f"/stored-images/{image.pk}")
    assert settings_mode.status_code == 404
