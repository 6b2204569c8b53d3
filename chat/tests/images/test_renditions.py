"""Renditions at ingest, by backfill and by task: moto's S3 over HTTP, the local photo API, PostgreSQL, real libvips."""

import hashlib
import io
import subprocess
import sys

import pytest
import pyvips
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image as PillowImage
from structlog.testing import capture_logs

from chat.images.ingestion import image_fetch_all
from chat.images.rendition_files import RenditionFailed, renditions_from_bytes
from chat.images.tasks import make_renditions_task
from chat.models import Image, ImageRendition, ImageStatus, RenditionsStatus
from chat.tests.celery_worker import running_celery_worker
from chat.tests.images.test_tasks import storage_environment, wait_for
from devservers.pictures import picture_jpeg

pytestmark = pytest.mark.django_db
# A Redis database of its own: kombu keeps one pool per broker URL (see test_tasks.py).
RENDITIONS_BROKER_URL = "redis://127.0.0.1:6379/12"


def encoded(fmt: str, *, size=(64, 48), **options) -> bytes:
    buffer = io.BytesIO()
    PillowImage.new("RGB", size, (200, 40, 90)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def object_bytes(s3_server, bucket, key) -> bytes:
    return s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def fetch(photo_api, **options):
    return image_fetch_all(api_url=photo_api.url, page_size=10, workers=4, **options)


@pytest.fixture
def drawn_photo_api(photo_api):
    """The photo API serving drawn pictures 1,600 px wide (about 150 KB each)."""
    photo_api.picture_width = 1600
    photo_api.listing = list(range(1, 6))
    return photo_api


def test_ingest_stores_webp_renditions_at_three_widths_beside_the_original(drawn_photo_api, s3_storage, s3_server):
    summary = fetch(drawn_photo_api)
    assert summary.stored == 5
    image = Image.objects.get(photo_id=3)
    assert image.renditions_status == RenditionsStatus.READY and image.renditions_error == ""
    renditions = list(image.renditions.order_by("width"))
    assert [(r.width, r.height) for r in renditions] == [(320, 213), (640, 427), (1280, 853)]
    bucket = s3_storage.bucket_name
    for rendition in renditions:
        data = object_bytes(s3_server, bucket, rendition.file)
        # Recorded as stored: size, sha256 (the key names it) and the ETag S3 answered.
        assert len(data) == rendition.byte_size and hashlib.sha256(data).hexdigest() == rendition.sha256
        assert rendition.file == f"renditions/{rendition.sha256[:2]}/{rendition.sha256}.webp"
        head = s3_server.client().head_object(Bucket=bucket, Key=rendition.file)
        assert head["ETag"].strip('"') == rendition.etag and head["ContentType"] == "image/webp"
        decoded = PillowImage.open(io.BytesIO(data))
        assert (decoded.format, decoded.size) == ("WEBP", (rendition.width, rendition.height))
    # Far fewer bytes than the original: the point of it all.
    assert renditions[1].byte_size * 5 < image.byte_size
    assert ImageRendition.objects.count() == 15


def test_a_picture_narrower_than_a_width_is_never_upscaled(photo_api, s3_storage):
    photo_api.picture_width = 500
    photo_api.listing = [1]
    fetch(photo_api)
    [image] = Image.objects.all()
    assert [(r.width, r.height) for r in image.renditions.order_by("width")] == [(320, 213), (500, 333)]


def test_a_tiny_picture_gets_one_rendition_at_its_own_size():
    made = renditions_from_bytes(encoded("PNG", size=(40, 30)), max_pixels=10_000)
    assert [(r.width, r.height) for r in made] == [(40, 30)]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("tiff", encoded("TIFF")),
        ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48"><rect width="64" height="48"/></svg>'),
    ],
)
def test_formats_the_service_does_not_accept_are_never_decoded_by_libvips(name, data):
    with pytest.raises(RenditionFailed, match="not in a known format"):
        renditions_from_bytes(data, max_pixels=10_000_000)


def test_the_blocked_tiff_would_decode_in_a_libvips_without_the_block():
    """Without this the test above could pass because libvips cannot read TIFF at all."""
    code = (
        "import sys, pyvips; image = pyvips.Image.new_from_buffer(sys.stdin.buffer.read(), '');"
        "print(image.get('vips-loader'), image.width)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], input=encoded("TIFF"), capture_output=True, check=True, timeout=60
    )
    assert result.stdout.split() == [b"tiffload_buffer", b"64"]
    assert pyvips.__name__ == "pyvips"


def test_too_many_pixels_are_refused_before_decoding():
    with pytest.raises(RenditionFailed, match="pixels exceeds 1000"):
        renditions_from_bytes(encoded("PNG", size=(100, 100)), max_pixels=1_000)


def test_a_rendition_failure_keeps_the_original_stored_and_says_why(photo_api, s3_storage, s3_server):
    """Pillow's check accepts a JPEG cut short (browsers draw what it holds); libvips refuses to decode it."""
    photo_api.picture_width = 800
    photo_api.listing = [1, 2]
    drawn = photo_api.image_bytes
    truncated = drawn(2)[:-4000]
    photo_api.image_bytes = lambda photo_id: truncated if photo_id == 2 else drawn(photo_id)
    with capture_logs() as events:
        summary = fetch(photo_api)
    assert summary.stored == 2 and summary.failed == 0
    [failed] = [event for event in events if event["event"] == "image_renditions.failed"]
    broken = Image.objects.get(photo_id=2)
    assert broken.status == ImageStatus.STORED
    assert object_bytes(s3_server, s3_storage.bucket_name, broken.file.name) == truncated
    assert broken.renditions_status == RenditionsStatus.FAILED
    assert broken.renditions_error.startswith("libvips: ") and broken.renditions.count() == 0
    assert failed["image_id"] == broken.pk and failed["reason"] == broken.renditions_error
    good = Image.objects.get(photo_id=1)
    assert good.renditions_status == RenditionsStatus.READY and good.renditions.count() == 3


def test_backfill_command_makes_the_missing_renditions_and_a_rerun_has_nothing_to_do(drawn_photo_api, s3_storage):
    fetch(drawn_photo_api)
    # As if stored before renditions existed.
    ImageRendition.objects.all().delete()
    Image.objects.update(renditions_status=RenditionsStatus.PENDING)
    out = io.StringIO()
    call_command("make_renditions", "--no-progress", stdout=out)
    assert "5 image(s), 5 ready, 0 failed" in out.getvalue()
    assert ImageRendition.objects.count() == 15
    assert set(Image.objects.values_list("renditions_status", flat=True)) == {RenditionsStatus.READY}
    out = io.StringIO()
    call_command("make_renditions", "--no-progress", stdout=out)
    assert "0 image(s), 0 ready, 0 failed" in out.getvalue()


def test_backfill_reports_an_original_it_cannot_read_and_fails_the_command(drawn_photo_api, s3_storage, s3_server):
    fetch(drawn_photo_api)
    Image.objects.update(renditions_status=RenditionsStatus.PENDING)
    victim = Image.objects.get(photo_id=4)
    s3_server.client().delete_object(Bucket=s3_storage.bucket_name, Key=victim.file.name)
    with pytest.raises(CommandError, match="1 image\\(s\\) have no renditions"):
        call_command("make_renditions", "--no-progress", stdout=io.StringIO())
    victim.refresh_from_db()
    assert victim.renditions_status == RenditionsStatus.FAILED and victim.renditions_error
    assert Image.objects.filter(renditions_status=RenditionsStatus.READY).count() == 4


@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_backfills_through_the_same_service(drawn_photo_api, s3_storage, settings, tmp_path):
    fetch(drawn_photo_api)
    ImageRendition.objects.all().delete()
    Image.objects.update(renditions_status=RenditionsStatus.PENDING)
    settings.CELERY_BROKER_URL = RENDITIONS_BROKER_URL
    with running_celery_worker(
        broker_url=RENDITIONS_BROKER_URL,
        output_path=tmp_path / "worker.log",
        env_overrides=storage_environment(drawn_photo_api, s3_storage),
    ):
        make_renditions_task.delay()
        wait_for(lambda: ImageRendition.objects.count() == 15, what="15 renditions", timeout=120)
        wait_for(
            lambda: not Image.objects.exclude(renditions_status=RenditionsStatus.READY).exists(),
            what="every image ready",
        )
    assert '"event": "image_renditions.stored"' in (tmp_path / "worker.log").read_text()


def test_renditions_made_from_bytes_replaced_meanwhile_are_not_recorded(drawn_photo_api, s3_storage):
    from chat.images.renditions import image_renditions_rebuild_one, image_renditions_record

    fetch(drawn_photo_api)
    image = Image.objects.get(photo_id=1)
    outcome = image_renditions_rebuild_one(image=image, storage=s3_storage)
    # A refresh stored other bytes before this outcome was written.
    Image.objects.filter(pk=image.pk).update(sha256="0" * 64, renditions_status=RenditionsStatus.PENDING)
    counts = image_renditions_record([(image.pk, outcome)])
    assert counts == {"ready": 0, "failed": 0, "stale": 1}
    image.refresh_from_db()
    assert image.renditions_status == RenditionsStatus.PENDING


def test_verify_images_finds_missing_and_corrupt_renditions_by_listing_and_repair_rebuilds_them(
    drawn_photo_api, s3_storage, s3_server
):
    fetch(drawn_photo_api)
    client, bucket = s3_server.client(), s3_storage.bucket_name
    gone = ImageRendition.objects.get(image__photo_id=1, width=320)
    resized = ImageRendition.objects.get(image__photo_id=2, width=640)
    same_size = ImageRendition.objects.get(image__photo_id=3, width=1280)
    client.delete_object(Bucket=bucket, Key=gone.file)
    client.put_object(Bucket=bucket, Key=resized.file, Body=b"not a picture")
    # Same length, other bytes: only the ETag tells.
    original = object_bytes(s3_server, bucket, same_size.file)
    client.put_object(Bucket=bucket, Key=same_size.file, Body=bytes([original[0] ^ 1]) + original[1:])

    out = io.StringIO()
    with pytest.raises(CommandError, match=r"3 rendition\(s\) missing or corrupt \(--repair rebuilds them"):
        call_command("verify_images", stdout=out)
    assert "renditions:     15 checked, 12 intact, 1 missing, 2 corrupt" in out.getvalue()
    assert f"({gone.file}): missing" in out.getvalue() and "ETag" in out.getvalue()

    out = io.StringIO()
    call_command("verify_images", "--repair", stdout=out)
    assert "rebuilt from the originals: 3 image(s)" in out.getvalue()
    for rendition in (gone, resized, same_size):
        rebuilt = ImageRendition.objects.get(image_id=rendition.image_id, width=rendition.width)
        data = object_bytes(s3_server, bucket, rebuilt.file)
        assert hashlib.sha256(data).hexdigest() == rebuilt.sha256 and len(data) == rebuilt.byte_size
    out = io.StringIO()
    call_command("verify_images", stdout=out)
    assert "renditions:     15 checked, 15 intact, 0 missing, 0 corrupt" in out.getvalue()


def rendition_puts(s3_server, bucket) -> int:
    return sum(f'"PUT /{bucket}/renditions/' in line for line in s3_server.request_lines())


def test_a_refresh_keeps_the_renditions_of_unchanged_bytes_and_remakes_those_of_changed_ones(
    drawn_photo_api, s3_storage, s3_server
):
    drawn_photo_api.listing = [1, 2]
    fetch(drawn_photo_api)
    bucket = s3_storage.bucket_name
    assert rendition_puts(s3_server, bucket) == 6
    before = {image.photo_id: image for image in Image.objects.all()}
    kept_rows = {photo_id: list(image.renditions.order_by("width").values()) for photo_id, image in before.items()}
    drawn = drawn_photo_api.image_bytes
    # Photo 2's source now serves other bytes (the same picture saved at another quality).
    changed = picture_jpeg(2, width=drawn_photo_api.picture_width, quality=80)
    drawn_photo_api.image_bytes = lambda photo_id: changed if photo_id == 2 else drawn(photo_id)
    summary = fetch(drawn_photo_api, refresh=True)
    assert summary.stored == 2 and summary.failed == 0
    unchanged, replaced = Image.objects.get(photo_id=1), Image.objects.get(photo_id=2)
    assert unchanged.sha256 == before[1].sha256 and unchanged.attempts == 2
    # Same bytes: the very rows (ids included) and objects made before, nothing encoded or uploaded again.
    assert unchanged.renditions_status == RenditionsStatus.READY
    assert list(unchanged.renditions.order_by("width").values()) == kept_rows[1]
    # New bytes: new renditions, made from them, recorded and uploaded (3 more PUTs, none for photo 1).
    assert replaced.sha256 == hashlib.sha256(changed).hexdigest() != before[2].sha256
    assert replaced.renditions_status == RenditionsStatus.READY
    new_rows = list(replaced.renditions.order_by("width"))
    assert [(r.width, r.height) for r in new_rows] == [(320, 213), (640, 427), (1280, 853)]
    assert {r.sha256 for r in new_rows}.isdisjoint(row["sha256"] for row in kept_rows[2])
    expected = [r.sha256 for r in renditions_from_bytes(changed, max_pixels=10**8)]
    assert [r.sha256 for r in new_rows] == expected
    assert rendition_puts(s3_server, bucket) == 9
    for rendition in new_rows:
        assert hashlib.sha256(object_bytes(s3_server, bucket, rendition.file)).hexdigest() == rendition.sha256
