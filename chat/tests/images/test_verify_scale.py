"""verify_images at scale: its memory does not grow with the bucket, and the listing's paging holds."""

import gc
import hashlib
import tracemalloc
from collections import Counter
from datetime import UTC, datetime

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from chat.images.objects import object_keys
from chat.images.verification import image_verify_all
from chat.models import Image, ImageStatus
from core.object_storage import StorageUnavailable
from core.s3_backend import parse_s3_timestamp
from devservers.s3 import S3Server

pytestmark = pytest.mark.django_db

BODY = b"\xff\xd8" + b"m" * 98


def _seed(s3_server, bucket: str, *, start: int, count: int) -> None:
    """count rows as the upload records them and their objects (put in bulk through devservers' moto)."""
    digest = hashlib.sha256(BODY).hexdigest()
    keys = [f"images/{number:07d}-scale.jpg" for number in range(start, start + count)]
    s3_server.put_objects(bucket, keys, body=BODY, content_type="image/jpeg", metadata={"sha256": digest})
    now = timezone.now()
    Image.objects.bulk_create(
        [
            Image(
                photo_id=start + offset,
                source_url=f"https://photos.example/{start + offset}.jpeg",
                status=ImageStatus.STORED,
                file=key,
                content_type="image/jpeg",
                byte_size=len(BODY),
                sha256=digest,
                etag=hashlib.md5(BODY).hexdigest(),  # what a single PutObject answers
                stored_at=now,
            )
            for offset, key in enumerate(keys)
        ],
        batch_size=2000,
    )


def _peak_bytes_of_a_whole_run(**options) -> tuple[int, object]:
    """The Python heap's peak above where it started, over one whole verify run."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        summary = image_verify_all(**options)
        return tracemalloc.get_traced_memory()[1] - before, summary
    finally:
        tracemalloc.stop()


def test_a_whole_runs_memory_is_the_same_for_10000_and_30000_objects(s3_server, s3_storage):
    bucket = s3_storage.bucket_name
    _seed(s3_server, bucket, start=0, count=300)
    # Warm: botocore's service model, Django's compiled queries and the thread pool's first use.
    assert image_verify_all().clean
    _seed(s3_server, bucket, start=300, count=9700)
    # From 10,000 on: below it the peak still rises to its plateau (the page fetched ahead meets
    # the batch at its largest; 2,000 -> 10,000 is +0.6 MB, 10,000 -> 30,000 +0.1 MB).
    small, summary = _peak_bytes_of_a_whole_run()
    assert summary.clean and summary.originals.by_listing == 10000
    _seed(s3_server, bucket, start=10000, count=20000)
    large, summary = _peak_bytes_of_a_whole_run()
    assert summary.clean and (summary.checked, summary.originals.by_listing) == (30000, 30000)
    # Anything kept per object (25 bytes of it would be 500 KB here) shows; what a run holds
    # at once is a batch and two pages, whatever the count.
    assert large - small < 512 * 1024, (small, large)


def test_a_run_leaves_no_row_in_a_reference_cycle(s3_server, s3_storage):
    """Rows freed as their batch goes, not at the next full garbage collection (a FieldFile read ties one)."""
    _seed(s3_server, s3_storage.bucket_name, start=0, count=500)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        assert image_verify_all(batch_size=100).clean
        gc.collect()
        cyclic = Counter(type(thing).__name__ for thing in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert (cyclic["Image"], cyclic["FieldFile"], cyclic["ModelState"]) == (0, 0, 0), cyclic.most_common(8)


def test_the_listing_gives_every_key_in_order_a_page_at_a_time(s3_server, s3_storage):
    _seed(s3_server, s3_storage.bucket_name, start=0, count=23)
    pages = list(object_keys(storage=default_storage, page_size=5))
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    keys = [item.key for page in pages for item in page]
    assert keys == sorted(keys) and len(set(keys)) == 23
    assert all(item.etag == hashlib.md5(BODY).hexdigest() for page in pages for item in page)
    assert all(item.modified_at.utcoffset().total_seconds() == 0 for page in pages for item in page)


def test_the_storage_stopping_between_pages_is_an_error_not_the_end_of_the_listing(s3_storage, settings):
    with S3Server() as outage:
        outage.create_bucket(s3_storage.bucket_name)
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                **settings.STORAGES["default"],
                "OPTIONS": {**settings.STORAGES["default"]["OPTIONS"], "endpoint_url": outage.endpoint_url},
            },
        }
        from django.core.files.storage import storages

        outage.put_objects(
            s3_storage.bucket_name,
            [f"images/{number}.jpg" for number in range(30)],
            body=BODY,
            content_type="image/jpeg",
            metadata={},
        )
        pages = object_keys(storage=storages["default"], page_size=10)
        received = [next(pages)]
        outage.stop()
        # The page fetched ahead may have come in before the stop; the one after it cannot have.
        with pytest.raises(StorageUnavailable, match="did not answer the listing"):
            received.extend(pages)
        assert len(received) in (1, 2)


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-03T17:12:43.000Z",
        "2026-12-03T17:12:43Z",
        "2026-12-03T17:12:43.123456Z",
        "Thu, 03 Dec 2026 17:12:43 GMT",
        "2026-12-03T17:12:43+01:00",
        "1764781963",
    ],
)
def test_timestamps_parse_to_the_instant_botocore_gives(text):
    from botocore.utils import parse_timestamp

    assert parse_s3_timestamp(text) == parse_timestamp(text)
    assert parse_s3_timestamp(text).utcoffset() is not None


def test_a_listings_last_modified_comes_back_aware_in_utc():
    assert parse_s3_timestamp("2026-12-03T17:12:43.000Z") == datetime(2026, 12, 3, 17, 12, 43, tzinfo=UTC)


def test_objects_put_in_bulk_are_what_a_put_object_stores(s3_server, s3_storage):
    client = s3_server.client()
    bucket = s3_storage.bucket_name
    client.put_object(
        Bucket=bucket, Key="images/one.jpg", Body=BODY, ContentType="image/jpeg", Metadata={"sha256": "x"}
    )
    s3_server.put_objects(bucket, ["images/many.jpg"], body=BODY, content_type="image/jpeg", metadata={"sha256": "x"})
    one, many = (client.head_object(Bucket=bucket, Key=key) for key in ("images/one.jpg", "images/many.jpg"))
    for field in ("ContentLength", "ETag", "ContentType", "Metadata"):
        assert one[field] == many[field], field
    listed = {item["Key"]: item for item in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed["images/one.jpg"]["ETag"] == listed["images/many.jpg"]["ETag"]
    assert listed["images/one.jpg"]["Size"] == listed["images/many.jpg"]["Size"]


def test_the_stand_ins_listing_sees_keys_put_and_deleted_between_pages(s3_server, s3_storage):
    client = s3_server.client()
    bucket = s3_storage.bucket_name
    s3_server.put_objects(
        bucket, [f"images/{n:02d}.jpg" for n in range(0, 20, 2)], body=BODY, content_type="image/jpeg", metadata={}
    )
    first = client.list_objects_v2(Bucket=bucket, Prefix="images/", MaxKeys=4)
    assert [item["Key"] for item in first["Contents"]] == [f"images/{n:02d}.jpg" for n in (0, 2, 4, 6)]
    client.put_object(Bucket=bucket, Key="images/09.jpg", Body=BODY)
    client.delete_object(Bucket=bucket, Key="images/10.jpg")
    rest = client.list_objects_v2(
        Bucket=bucket, Prefix="images/", MaxKeys=100, ContinuationToken=first["NextContinuationToken"]
    )
    assert [item["Key"] for item in rest["Contents"]] == [f"images/{n:02d}.jpg" for n in (8, 9, 12, 14, 16, 18)]
    assert client.list_objects_v2(Bucket=bucket, Prefix="images/1")["KeyCount"] == 4
