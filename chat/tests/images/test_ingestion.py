"""image_fetch_all against the local photo API and moto's S3 server over HTTP, on PostgreSQL."""

import hashlib

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.images.ingestion import PhotoSourceError, image_fetch_all
from chat.models import Image, ImageStatus
from core.object_storage import StorageUnavailable
from devservers.s3 import S3Server

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.IMAGE_FETCH_RETRIES = 1


def bucket_keys(s3_server, storage):
    paginator = s3_server.client().get_paginator("list_objects_v2")
    return sorted(
        item["Key"]
        for page in paginator.paginate(Bucket=storage.bucket_name, Prefix="images/")
        for item in page.get("Contents", [])
    )


def stored_keys():
    return sorted(Image.objects.filter(status=ImageStatus.STORED).values_list("file", flat=True))


def fetch(photo_api, **options):
    options = {"page_size": 7, "workers": 4, **options}
    return image_fetch_all(api_url=photo_api.url, **options)


def test_every_photo_of_several_pages_is_stored_with_its_metadata(photo_api, s3_storage, s3_server):
    summary = fetch(photo_api)
    assert (summary.pages, summary.seen, summary.stored, summary.failed) == (5, 30, 30, 0)
    assert summary.bytes == sum(len(photo_api.image_bytes(number)) for number in range(1, 31))

    image = Image.objects.get(photo_id=12)
    body = photo_api.image_bytes(12)
    assert image.status == ImageStatus.STORED and image.stored_at is not None and image.last_error == ""
    assert image.source_url == photo_api.image_url(12)
    assert image.file.name.startswith("images/12-") and image.file.name.endswith(".jpg")
    assert (image.content_type, image.byte_size, image.sha256) == (
        "image/jpeg",
        len(body),
        hashlib.sha256(body).hexdigest(),
    )
    assert image.width and image.height and image.attempts == 1
    assert (image.title, image.api_user_id) == ("Photo number 12", 12 % 40 + 1)

    head = s3_server.client().head_object(Bucket=s3_storage.bucket_name, Key=image.file.name)
    assert head["Metadata"] == {"source-url": photo_api.image_url(12), "photo-id": "12", "sha256": image.sha256}
    assert head["ContentType"] == "image/jpeg" and head["ContentLength"] == len(body)
    assert s3_storage.open(image.file.name).read() == body
    assert bucket_keys(s3_server, s3_storage) == stored_keys()


def test_a_second_run_downloads_nothing(photo_api, s3_storage, s3_server):
    fetch(photo_api)
    photo_api.reset_log()
    summary = fetch(photo_api)
    assert (summary.stored, summary.already_stored, summary.failed) == (0, 30, 0)
    assert photo_api.image_requests() == []
    assert Image.objects.count() == 30 and len(bucket_keys(s3_server, s3_storage)) == 30


def test_refresh_downloads_again_into_the_same_keys(photo_api, s3_storage, s3_server):
    fetch(photo_api)
    keys_before = bucket_keys(s3_server, s3_storage)
    photo_api.reset_log()
    summary = fetch(photo_api, refresh=True)
    assert summary.stored == 30 and len(photo_api.image_requests()) == 30
    assert bucket_keys(s3_server, s3_storage) == keys_before == stored_keys()
    assert set(Image.objects.values_list("attempts", flat=True)) == {2}


def test_a_photo_listed_twice_is_stored_once(photo_api, s3_storage, s3_server):
    # 3 shows up again on the next page, 9 twice on its own page.
    photo_api.listing = [1, 2, 3, 4, 5, 6, 7, 3, 8, 9, 9, 10]
    summary = fetch(photo_api, page_size=7)
    assert (summary.seen, summary.stored, summary.duplicates) == (12, 10, 2)
    assert Image.objects.count() == 10
    assert photo_api.image_requests().count("/public/sample-photos/3.jpeg") == 1
    assert len(bucket_keys(s3_server, s3_storage)) == 10


def test_a_photo_listed_again_pages_later_is_not_downloaded_twice(photo_api, s3_storage):
    photo_api.listing = [*range(1, 16), 2]
    summary = fetch(photo_api, page_size=4)
    assert (summary.stored, summary.duplicates, summary.already_stored) == (15, 1, 0)
    assert photo_api.image_requests().count("/public/sample-photos/2.jpeg") == 1


def test_bad_photos_are_recorded_failed_with_their_reason_and_never_stop_the_others(photo_api, s3_storage, settings):
    settings.IMAGE_FETCH_MAX_BYTES = 150_000
    photo_api.set_photo_fault(2, "not-image")
    photo_api.set_photo_fault(3, "missing")
    photo_api.set_photo_fault(4, "oversized", size=1_000_000)
    photo_api.set_photo_fault(5, "oversized-chunked", size=1_000_000)
    photo_api.set_photo_fault(6, "bomb")
    summary = fetch(photo_api)
    assert (summary.stored, summary.failed) == (25, 5)
    assert dict(summary.failure_kinds) == {
        "not an allowed image": 1,
        "download failed": 1,
        "too large": 2,
        "decompression bomb": 1,
    }
    failed = {image.photo_id: image for image in Image.objects.filter(status=ImageStatus.FAILED)}
    assert sorted(failed) == [2, 3, 4, 5, 6]
    assert "not an image" in failed[2].last_error
    assert failed[3].last_error == "HTTP 404"
    assert "Content-Length 1000000" in failed[4].last_error
    assert "more than 150000 bytes" in failed[5].last_error
    assert "decompression bomb" in failed[6].last_error
    assert all(image.attempts == 1 and not image.file and image.stored_at is None for image in failed.values())
    assert {failure.photo_id for failure in summary.failures} == {2, 3, 4, 5, 6}


def test_failed_photos_are_retried_on_the_next_run(photo_api, s3_storage):
    photo_api.set_photo_fault(2, "missing")
    fetch(photo_api)
    fetch(photo_api)
    assert Image.objects.get(photo_id=2).attempts == 2
    photo_api.clear_photo_fault(2)
    photo_api.reset_log()
    summary = fetch(photo_api)
    assert (summary.stored, summary.already_stored, summary.failed) == (1, 29, 0)
    assert photo_api.image_requests() == ["/public/sample-photos/2.jpeg"]
    image = Image.objects.get(photo_id=2)
    assert (image.status, image.last_error, image.attempts) == (ImageStatus.STORED, "", 3)


def test_a_refresh_that_fails_keeps_the_copy_stored_before(photo_api, s3_storage):
    fetch(photo_api)
    photo_api.set_photo_fault(8, "missing")
    summary = fetch(photo_api, refresh=True)
    assert summary.failed == 1
    image = Image.objects.get(photo_id=8)
    assert image.status == ImageStatus.STORED and image.file and image.last_error == "HTTP 404"


def test_a_server_error_then_success_stores_the_photo(photo_api, s3_storage):
    photo_api.set_photo_fault(9, "server-error", times=1, status=503)
    summary = fetch(photo_api)
    assert (summary.stored, summary.failed) == (30, 0)


def test_invalid_entries_are_counted_failed_without_a_row(photo_api, s3_storage):
    photo_api.photo_overrides[4] = {"url": "ftp://photos.example/4.jpeg"}
    photo_api.photo_overrides[5] = {"id": "five"}
    summary = fetch(photo_api)
    assert (summary.seen, summary.stored, summary.failed) == (30, 28, 2)
    assert summary.failure_kinds["invalid entry"] == 2
    assert not Image.objects.filter(photo_id__in=[4, 5]).exists()


def test_a_page_of_garbage_stops_the_run_and_keeps_what_was_stored(photo_api, s3_storage, s3_server):
    photo_api.set_page_fault(14, "garbage")
    with pytest.raises(PhotoSourceError, match="photo API: not JSON"):
        fetch(photo_api)
    assert Image.objects.filter(status=ImageStatus.STORED).count() == 14
    assert not Image.objects.exclude(status=ImageStatus.STORED).exists()
    assert bucket_keys(s3_server, s3_storage) == stored_keys()


def test_a_page_that_keeps_failing_stops_the_run_with_a_clear_error(photo_api, s3_storage):
    photo_api.set_page_fault(7, "server-error", status=503)
    with pytest.raises(PhotoSourceError, match="HTTP 503"):
        fetch(photo_api)
    assert Image.objects.filter(status=ImageStatus.STORED).count() == 7


def test_limit_stops_after_that_many_photos(photo_api, s3_storage):
    summary = fetch(photo_api, limit=10, page_size=4)
    assert (summary.seen, summary.stored, summary.pages) == (10, 10, 3)
    assert Image.objects.count() == 10
    assert photo_api.page_requests()[-1].endswith("offset=8&limit=2")


def test_a_drifting_total_does_not_change_what_is_fetched(photo_api, s3_storage):
    photo_api.drifting_total = True
    assert fetch(photo_api).stored == 30


def test_database_writes_are_batched_per_page_not_per_photo(photo_api, s3_storage):
    photo_api.listing = list(range(1, 11))
    with CaptureQueriesContext(connection) as ten_photos:
        fetch(photo_api, page_size=5)
    Image.objects.all().delete()
    photo_api.listing = list(range(1, 31))
    with CaptureQueriesContext(connection) as thirty_photos:
        fetch(photo_api, page_size=15)
    # Two pages each time: the same number of queries for three times the photos.
    # Two pages each time: the same number of queries for three times the photos. The lock and its
    # release, then per page the lookup, the upsert and the renditions (savepoint, rows locked,
    # replaced, inserted, marked ready, release).
    assert len(ten_photos) == len(thirty_photos) <= 2 + 2 * 8, [query["sql"][:60] for query in thirty_photos]


def test_storage_unreachable_is_a_clear_error_and_no_row_is_marked_stored(photo_api, s3_storage, settings):
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
        outage.stop()
        with pytest.raises(StorageUnavailable, match=f"at {outage.endpoint_url} is not usable"):
            fetch(photo_api)
    assert not Image.objects.filter(status=ImageStatus.STORED).exists()
    assert photo_api.image_requests() == []


def test_storage_lost_mid_run_stops_the_run_and_no_row_claims_a_file_it_lacks(photo_api, s3_storage, settings):
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
        photo_api.latency = 0.05
        uploaded_before_outage = set()

        def stop_after_first_page(report):
            if not uploaded_before_outage:
                uploaded_before_outage.update(bucket_keys(outage, s3_storage))
                outage.stop()

        with pytest.raises(StorageUnavailable, match=r"upload of images/.* failed"):
            image_fetch_all(api_url=photo_api.url, page_size=5, workers=2, on_page=stop_after_first_page)
    first_page = Image.objects.filter(photo_id__lte=5)
    assert all(image.status == ImageStatus.STORED for image in first_page)
    assert {image.file.name for image in first_page} <= uploaded_before_outage
    assert not Image.objects.exclude(status=ImageStatus.STORED).exclude(file="").exists()


def test_the_file_system_storage_behaves_the_same_without_second_copies(photo_api, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"allow_overwrite": True}},
    }
    photo_api.listing = list(range(1, 6))
    fetch(photo_api)
    fetch(photo_api, refresh=True)
    files = sorted(str(path.relative_to(tmp_path)) for path in (tmp_path / "images").rglob("*") if path.is_file())
    assert files == stored_keys() and len(files) == 5
    # The five share their pixels (one noise picture, a comment each): one content-addressed rendition.
    assert len([path for path in (tmp_path / "renditions").rglob("*") if path.is_file()]) == 1
    assert (tmp_path / stored_keys()[0]).read_bytes() in {photo_api.image_bytes(number) for number in range(1, 6)}
