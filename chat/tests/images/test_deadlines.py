"""Wall-clock deadlines against a peer that trickles one byte every half second (devservers.trickle).

Each byte arrives well within every read timeout, so only a deadline that does not wait for data
ends these requests. The trickled bodies are 40 bytes: without the deadline each request takes 20 s.
"""

import io
import threading
import time

import psycopg2
import pytest
from django.db import connection

from chat.images.download import DownloadedImage, DownloadFailed, image_download
from chat.images.fetch_lock import FETCH_LOCK_KEY
from chat.images.ingestion import image_fetch_all
from chat.images.objects import object_facts
from chat.images.photo_api import Photo, PhotoApiClient, PhotoApiUnavailable
from chat.images.rendition_files import RenditionBytes
from chat.images.renditions import RenditionFailed, rendition_upload
from chat.images.storing import image_upload
from chat.models import Image, ImageStatus
from conftest import s3_storage_options
from core.deadlines import DeadlineExceeded, deadline_scope
from core.object_storage import StorageUnavailable
from core.outbound_http import OutboundPolicy, outbound_session
from core.s3_backend import SharedClientS3Storage
from devservers.trickle import TrickleServer

TRICKLED_BYTES = 40  # 20 s at one byte per 0.5 s


@pytest.fixture
def trickle():
    with TrickleServer(interval=0.5, body=b"\xff\xd8" + b"x" * (TRICKLED_BYTES - 2)) as server:
        yield server


def session(**policy):
    # Read timeouts far above the 0.5 s between bytes: only the deadline can end the request.
    policy = {"allow_private_networks": True, "retries": 2, "backoff_factor": 0.01, "read_timeout": 10.0, **policy}
    return outbound_session(OutboundPolicy(**policy))


@pytest.mark.parametrize("path", ["body/1", "headers/1"])
def test_a_trickling_download_ends_at_its_deadline_with_a_clear_error(trickle, path):
    started = time.monotonic()
    with pytest.raises(DownloadFailed, match=r"download took longer than (its )?2s"):
        image_download(
            session=session(), url=trickle.url(path), max_bytes=1_000_000, max_pixels=1_000_000, deadline_seconds=2
        )
    elapsed = time.monotonic() - started
    assert 1.9 <= elapsed < 3.0, elapsed
    # The connection is closed, not left trickling into a socket nobody reads.
    deadline = time.monotonic() + 2
    while trickle.open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trickle.open_connections == 0
    # One request: retries do not start over past the deadline.
    assert trickle.requests == 1


def test_a_request_started_after_the_deadline_is_not_sent(trickle):
    with deadline_scope(0.01) as scope:
        time.sleep(0.05)
        with pytest.raises(DeadlineExceeded):
            session().get(trickle.url("body/1"))
    assert scope.expired and trickle.requests == 0


def test_a_trickling_photo_api_page_fails_at_its_deadline(trickle):
    client = PhotoApiClient(list_url=trickle.url("body/json/photos"), session=session(), deadline_seconds=2)
    started = time.monotonic()
    with pytest.raises(PhotoApiUnavailable, match="photo API page took longer than its 2s deadline"):
        client.page(offset=0, limit=10)
    assert 1.9 <= time.monotonic() - started < 3.0


@pytest.mark.django_db(transaction=True)
def test_fetch_images_with_many_trickling_photos_ends_in_its_bound_and_releases_the_lock(
    photo_api, s3_storage, trickle, settings
):
    settings.IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS = True
    settings.IMAGE_FETCH_RETRIES = 1
    settings.IMAGE_FETCH_READ_TIMEOUT = 10.0
    settings.IMAGE_FETCH_DEADLINE = 2.0
    slow = list(range(1, 17))
    for photo_id in slow:
        photo_api.set_photo_fault(photo_id, "redirect-to", location=trickle.url(f"body/{photo_id}"))
    done = threading.Event()
    result = {}

    def run():
        try:
            result["summary"] = image_fetch_all(api_url=photo_api.url, page_size=10, workers=8, limit=20)
        finally:
            connection.close()  # this thread's own connection
            done.set()

    started = time.monotonic()
    # In a thread so a run that hangs fails this test instead of hanging the suite.
    threading.Thread(target=run, daemon=True).start()
    # 16 slow photos on 8 workers: two rounds of 2 s, plus the fast four and the uploads.
    assert done.wait(15), "fetch_images still running after 15 s"
    elapsed = time.monotonic() - started
    summary = result["summary"]
    assert (summary.stored, summary.failed) == (4, 16)
    assert elapsed < 8, elapsed
    failed = Image.objects.filter(photo_id__in=slow)
    assert {row.status for row in failed} == {ImageStatus.FAILED}
    assert all("took longer than its 2s deadline" in row.last_error and not row.file.name for row in failed)
    # Nothing of the slow photos reached the bucket.
    stored_keys = set(Image.objects.filter(status=ImageStatus.STORED).values_list("file", flat=True))
    # The originals (renditions are stored beside them, under renditions/).
    listed = s3_storage.shared_client.list_objects_v2(Bucket=s3_storage.bucket_name, Prefix="images/").get(
        "Contents", []
    )
    assert {item["Key"] for item in listed} == stored_keys and len(stored_keys) == 4
    # The fetch lock is free: another session (a scheduled fetch, verify --repair) can take it.
    other = psycopg2.connect(**_connection_params())
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [FETCH_LOCK_KEY])
            assert cursor.fetchone()[0]
    finally:
        other.close()


def _connection_params() -> dict:
    params = connection.get_connection_params()
    return {key: value for key, value in params.items() if key in ("dbname", "user", "host", "port", "password")}


@pytest.fixture
def trickling_storage(trickle, settings):
    """S3 storage whose server trickles every answer, headers included (the bucket "headers" names the trickle)."""
    settings.STORAGE_CALL_DEADLINE = 2.0
    return SharedClientS3Storage(**s3_storage_options(endpoint_url=trickle.url(""), bucket_name="headers"))


def test_a_storage_call_to_a_trickling_server_ends_at_its_deadline(trickling_storage):
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="took longer than its 2s deadline"):
        object_facts(storage=trickling_storage, key="images/1-x.jpg")
    assert time.monotonic() - started < 3.0


# 9 MiB is past s3transfer's own 8 MiB multipart threshold: its parts would run in threads outside
# the deadline. An image of any accepted size is one PutObject (pru_app.s3_options.SINGLE_PUT_UP_TO).
@pytest.mark.parametrize("size", [5, 9 * 1024 * 1024], ids=["small", "past-the-multipart-threshold"])
def test_an_upload_to_a_trickling_server_ends_at_its_deadline(trickling_storage, size):
    photo = Photo(photo_id=1, url="http://127.0.0.1/1.jpg")
    downloaded = DownloadedImage(
        file=io.BytesIO(b"x" * size),
        byte_size=size,
        sha256="0" * 64,
        content_type="image/jpeg",
        extension="jpg",
        width=1,
        height=1,
    )
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="took longer than its 2s deadline"):
        image_upload(trickling_storage, key="images/1-x.jpg", downloaded=downloaded, photo=photo)
    assert time.monotonic() - started < 3.0


def test_a_rendition_upload_to_a_trickling_server_ends_at_its_deadline(trickling_storage):
    rendition = RenditionBytes(width=320, height=240, data=b"webp bytes", sha256="1" * 64)
    started = time.monotonic()
    with pytest.raises(RenditionFailed, match="took longer than its 2s deadline"):
        rendition_upload(storage=trickling_storage, rendition=rendition)
    assert time.monotonic() - started < 3.0
