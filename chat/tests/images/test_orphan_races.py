"""verify_images --delete-orphans against a fetch that stores the same key between the listing and the delete.

Two threads with their own database connections; a gate in front of moto's S3 server holds the
verify's DELETE until the fetch has had its chance to upload and record the key. Whatever the
interleaving, a row that says `stored` must have its bytes.
"""

import threading
from datetime import timedelta

import pytest
from django.db import connection

from chat.images.fetch_lock import FetchAlreadyRunning
from chat.images.ingestion import image_fetch_all
from chat.images.verification import image_verify_all
from chat.models import Image, ImageStatus
from conftest import s3_storage_options
from core.s3_backend import SharedClientS3Storage
from devservers.s3_gate import S3Gate

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.IMAGE_FETCH_RETRIES = 1


def test_delete_orphans_never_deletes_an_object_a_fetch_records_meanwhile(photo_api, s3_storage, s3_server):
    photo_api.photos = 3
    photo_api.listing = [1, 2, 3]
    assert image_fetch_all(api_url=photo_api.url, page_size=3, workers=2).stored == 3
    # Photo 2's row is deleted in the admin: its object is an orphan now, and old enough to delete.
    orphan = Image.objects.get(photo_id=2)
    key = orphan.file.name
    orphan.delete()

    with S3Gate(s3_server.endpoint_url) as gate:
        gated = SharedClientS3Storage(
            **s3_storage_options(endpoint_url=gate.endpoint_url, bucket_name=s3_storage.bucket_name)
        )
        outcome: dict = {}

        def verify():
            try:
                outcome["verify"] = image_verify_all(
                    delete_orphans=True, orphan_min_age=timedelta(0), storage=gated, workers=2
                )
            except FetchAlreadyRunning as error:
                outcome["verify"] = error
            finally:
                connection.close()
                gate.release()

        verifier = threading.Thread(target=verify)
        verifier.start()
        # The verify has listed the bucket, judged the key an orphan and sent its DELETE: held here.
        gate.arrived.wait(30)
        assert gate.held, "the verify never tried to delete the orphan"
        try:
            # A fetch run now: the API lists photo 2 again, so the fetch uploads and records its key.
            outcome["fetch"] = image_fetch_all(api_url=photo_api.url, page_size=3, workers=2)
        except FetchAlreadyRunning as error:
            outcome["fetch"] = error
        finally:
            gate.release()
        verifier.join(30)
        assert not verifier.is_alive()

    # Every row that says stored has its bytes behind it.
    client = s3_server.client()
    for image in Image.objects.filter(status=ImageStatus.STORED):
        head = client.head_object(Bucket=s3_storage.bucket_name, Key=image.file.name)
        assert head["ContentLength"] == image.byte_size, image.file.name
    # And the two did not both do their work: one of them found the other's run going.
    assert isinstance(outcome["fetch"], FetchAlreadyRunning) or isinstance(outcome["verify"], FetchAlreadyRunning)
    if isinstance(outcome["fetch"], FetchAlreadyRunning):
        assert outcome["verify"].orphans_deleted == 1 and not Image.objects.filter(file=key).exists()
