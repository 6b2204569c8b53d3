"""Backups against a fetch: the mirror of the objects never runs while a fetch, repair or orphan delete does."""

import psycopg2
import pytest
from django.db import connection

from chat.backups.backup import BackupError, backup_create, backup_restore
from chat.images.fetch_lock import FETCH_LOCK_KEY
from chat.images.ingestion import image_fetch_all

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fetch_running():
    """Another database session holding the fetch lock, as a running fetch_images does."""
    params = connection.get_connection_params()
    other = psycopg2.connect(**{key: params[key] for key in ("dbname", "user", "host", "port") if key in params})
    other.autocommit = True
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [FETCH_LOCK_KEY])
    yield other
    other.close()


def test_a_backup_waits_for_a_running_fetch_and_marks_nothing_complete(fetch_running, s3_storage, tmp_path):
    with pytest.raises(BackupError, match=r"found a fetch run going.*the backup waits for it"):
        backup_create(destination=tmp_path, name="during-fetch", database=False)
    assert not (tmp_path / "during-fetch" / "backup.json").exists()


def test_a_backup_after_the_fetch_holds_every_object(photo_api, s3_storage, tmp_path, settings):
    settings.IMAGE_FETCH_RETRIES = 1
    photo_api.photos = 3
    photo_api.listing = [1, 2, 3]
    image_fetch_all(api_url=photo_api.url, page_size=3, workers=2)
    report = backup_create(destination=tmp_path, name="after", database=False)
    assert report.objects == 3


def test_an_objects_restore_waits_for_a_running_fetch(photo_api, s3_storage, tmp_path, settings):
    settings.IMAGE_FETCH_RETRIES = 1
    photo_api.photos = 2
    photo_api.listing = [1, 2]
    image_fetch_all(api_url=photo_api.url, page_size=2, workers=2)
    backup_create(destination=tmp_path, name="b", database=False)
    params = connection.get_connection_params()
    other = psycopg2.connect(**{key: params[key] for key in ("dbname", "user", "host", "port") if key in params})
    try:
        other.autocommit = True
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [FETCH_LOCK_KEY])
        with pytest.raises(BackupError, match="the restore waits for it"):
            backup_restore(source=tmp_path / "b", database=False)
    finally:
        other.close()
