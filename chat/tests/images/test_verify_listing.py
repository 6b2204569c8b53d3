"""verify_images by listing: ETags recorded at upload, the listing compared, bytes read only where they differ."""

import hashlib
from datetime import UTC, datetime

import pytest
from django.core.files.storage import default_storage

from chat.images.ingestion import image_fetch_all
from chat.images.objects import StoredObject, object_listing
from chat.images.verification import _VerifyRun, image_verify_all, originals_verify_pass
from chat.images.verify_listing import merge_by_key
from chat.images.verify_reports import ImageVerifySummary
from chat.models import Image, ImageStatus
from core.concurrency import ContextThreadPool

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.IMAGE_FETCH_RETRIES = 1


@pytest.fixture
def stored(photo_api, s3_storage):
    photo_api.photos = 12
    photo_api.listing = list(range(1, 13))
    assert image_fetch_all(api_url=photo_api.url, page_size=12, workers=4).stored == 12
    return {image.photo_id: image for image in Image.objects.all()}


def test_the_upload_records_the_etag_the_storage_answered(stored, s3_server, s3_storage, photo_api):
    client = s3_server.client()
    for image in stored.values():
        head = client.head_object(Bucket=s3_storage.bucket_name, Key=image.file.name)
        assert image.etag and image.etag == head["ETag"].strip('"')
        # A single PutObject's ETag is the bytes' MD5.
        assert image.etag == hashlib.md5(photo_api.image_bytes(image.photo_id)).hexdigest()


def test_an_intact_bucket_is_checked_by_the_listing_alone(stored, s3_storage):
    summary = image_verify_all()
    assert summary.clean and summary.checked == 12
    counts = summary.originals
    assert (counts.checked, counts.by_listing, counts.looked_up, counts.read) == (12, 12, 0, 0)


def test_rows_stored_before_etags_get_theirs_from_the_first_verify_then_the_listing_alone(stored, s3_storage):
    etags = {image.pk: image.etag for image in stored.values()}
    Image.objects.update(etag="")

    first = image_verify_all()
    assert first.clean and (first.originals.looked_up, first.originals.by_listing, first.etags_recorded) == (12, 0, 12)
    assert dict(Image.objects.values_list("pk", "etag")) == etags

    second = image_verify_all()
    assert second.clean and (second.originals.by_listing, second.etags_recorded) == (12, 0)


def test_same_size_bytes_that_keep_the_old_sha256_metadata_are_found_by_their_etag(stored, s3_server, s3_storage):
    client = s3_server.client()
    image = stored[5]
    # A copy that claims to be the photo: same length, the same x-amz-meta-sha256. Only the bytes differ.
    client.put_object(
        Bucket=s3_storage.bucket_name,
        Key=image.file.name,
        Body=b"\0" * image.byte_size,
        Metadata={"sha256": image.sha256},
    )
    summary = image_verify_all()
    assert (summary.corrupt, summary.intact, summary.originals.read) == (1, 11, 1)
    image.refresh_from_db()
    assert image.status == ImageStatus.CORRUPT and "sha256" in image.last_error


def test_a_copy_put_back_under_another_etag_is_read_once_found_intact_and_its_etag_recorded(
    stored, s3_server, s3_storage, photo_api
):
    image = stored[7]
    Image.objects.filter(pk=image.pk).update(etag="0" * 32 + "-2")  # as a multipart upload's ETag looks
    summary = image_verify_all()
    assert summary.clean and (summary.originals.read, summary.etags_recorded) == (1, 1)
    image.refresh_from_db()
    assert image.etag == hashlib.md5(photo_api.image_bytes(image.photo_id)).hexdigest()


def test_deep_reads_every_object_and_a_deep_sample_reads_that_many(stored, s3_storage):
    assert image_verify_all(read_data=True).originals.read == 12
    sampled = image_verify_all(deep_sample=5).originals
    assert (sampled.read, sampled.by_listing) == (5, 7)


def test_a_row_whose_object_came_after_its_listing_page_is_looked_up_not_marked_missing(stored, s3_storage):
    late = stored[3]
    # The listing as it was read before this photo's upload: its key is not in it.
    listing = [item for item in object_listing(storage=default_storage) if item.key != late.file.name]
    summary = ImageVerifySummary(where="test")
    with ContextThreadPool(max_workers=2) as executor:
        run = _VerifyRun(
            summary=summary, storage=default_storage, read_data=False, executor=executor, repair_session=None
        )
        counts = originals_verify_pass(listing=listing, run=run, batch_size=5)
    assert (counts.by_listing, counts.looked_up) == (11, 1)
    assert (summary.intact, summary.missing) == (12, 0)


def test_the_merge_pairs_rows_with_keys_and_hands_on_the_keys_no_row_names():
    when = datetime(2026, 1, 1, tzinfo=UTC)

    class Row:
        def __init__(self, key):
            self.key = key

    listing = [StoredObject(key=key, modified_at=when) for key in ["a", "b", "c", "d", "e", "f"]]
    batches = [[Row("b"), Row("b"), Row("bb")], [Row("e")]]
    merged = list(merge_by_key(row_batches=batches, listing=listing, key_of=lambda row: row.key))
    pairs = [[(pair.row.key, pair.listed.key if pair.listed else None) for pair in found] for found, _ in merged]
    unnamed = [[item.key for item in objects] for _, objects in merged]
    assert pairs == [[("b", "b"), ("b", "b"), ("bb", None)], [("e", "e")], []]
    assert unnamed == [["a"], ["c", "d"], ["f"]]
