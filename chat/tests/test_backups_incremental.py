"""Incremental backups against moto over HTTP: unchanged objects hard-linked, retention, each backup restorable alone."""

import hashlib
import json
import os

import pytest

from chat.backups.backup import BackupError, backup_create, backup_restore
from chat.images.ingestion import image_fetch_all
from chat.models import Image

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored(photo_api, s3_storage, settings):
    settings.IMAGE_FETCH_RETRIES = 1
    photo_api.photos = 12
    photo_api.listing = list(range(1, 13))
    assert image_fetch_all(api_url=photo_api.url, page_size=12, workers=4).stored == 12
    return list(Image.objects.order_by("pk"))


def bucket_contents(s3_server, bucket):
    client = s3_server.client()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        item["Key"]: hashlib.sha256(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()).hexdigest()
        for item in listed
    }


def manifest(folder):
    return {
        entry["key"]: entry["sha256"] for entry in map(json.loads, (folder / "manifest.jsonl").read_text().splitlines())
    }


def empty_bucket(s3_server, bucket):
    client = s3_server.client()
    for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=item["Key"])


def test_a_second_backup_with_no_new_images_copies_nothing_and_links_every_object(
    stored, s3_server, s3_storage, tmp_path
):
    total = len(bucket_contents(s3_server, s3_storage.bucket_name))  # the originals and their renditions
    first = backup_create(destination=tmp_path, name="one", database=False)
    assert (first.objects, first.copied, first.linked) == (total, total, 0)

    second = backup_create(destination=tmp_path, name="two", database=False)
    assert (second.objects, second.copied, second.linked, second.linked_from) == (total, 0, total, "one")
    assert manifest(tmp_path / "two") == manifest(tmp_path / "one")
    for image in stored:
        one, two = tmp_path / "one" / "objects" / image.file.name, tmp_path / "two" / "objects" / image.file.name
        assert os.stat(one).st_ino == os.stat(two).st_ino  # one copy of the bytes on disk


def test_only_new_and_changed_objects_are_copied(stored, s3_server, s3_storage, tmp_path):
    client, bucket = s3_server.client(), s3_storage.bucket_name
    total = len(bucket_contents(s3_server, bucket))
    backup_create(destination=tmp_path, name="one", database=False)
    changed = stored[4].file.name
    client.put_object(Bucket=bucket, Key=changed, Body=b"other bytes")
    client.put_object(Bucket=bucket, Key="images/999-new.jpg", Body=b"a new one")

    second = backup_create(destination=tmp_path, name="two", database=False)
    assert (second.objects, second.copied, second.linked) == (total + 1, 2, total - 1)
    assert manifest(tmp_path / "two")[changed] == hashlib.sha256(b"other bytes").hexdigest()
    # The first backup still holds the bytes it was made with.
    assert manifest(tmp_path / "one")[changed] == stored[4].sha256
    assert hashlib.sha256((tmp_path / "one" / "objects" / changed).read_bytes()).hexdigest() == stored[4].sha256


def test_an_older_backup_restores_after_newer_ones_and_after_pruning(stored, s3_server, s3_storage, tmp_path):
    bucket = s3_storage.bucket_name
    client = s3_server.client()
    backup_create(destination=tmp_path, name="one", database=False)
    client.delete_object(Bucket=bucket, Key=stored[0].file.name)
    client.put_object(Bucket=bucket, Key="images/999-new.jpg", Body=b"a new one")
    backup_create(destination=tmp_path, name="two", database=False)
    as_of_two = bucket_contents(s3_server, bucket)
    client.put_object(Bucket=bucket, Key="images/998-newer.jpg", Body=b"newer still")
    three = backup_create(destination=tmp_path, name="three", database=False, keep=2)
    assert three.pruned == ["one"] and not (tmp_path / "one").exists()

    # The older of the two kept, restored on its own although "three" is newer.
    empty_bucket(s3_server, bucket)
    restored = backup_restore(source=tmp_path / "two", database=False)
    assert restored.objects == len(as_of_two) and bucket_contents(s3_server, bucket) == as_of_two == manifest(
        tmp_path / "two"
    )

    # Keep one: "two" and "three" go, and "four" (all linked from them) is still whole.
    four = backup_create(destination=tmp_path, name="four", database=False, keep=1)
    assert (four.copied, sorted(four.pruned)) == (0, ["three", "two"])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["four"]
    empty_bucket(s3_server, bucket)
    assert backup_restore(source=tmp_path / "four", database=False).objects == len(as_of_two)
    assert bucket_contents(s3_server, bucket) == as_of_two


def test_pruning_never_touches_a_folder_that_is_not_a_finished_backup(stored, s3_storage, tmp_path):
    (tmp_path / "running").mkdir()  # a backup still being written has no backup.json yet
    (tmp_path / "running" / "database.dump").write_bytes(b"partial")
    backup_create(destination=tmp_path, name="one", database=False)
    backup_create(destination=tmp_path, name="two", database=False, keep=1)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["running", "two"]
    with pytest.raises(BackupError, match=r"no backup\.json"):
        backup_restore(source=tmp_path / "running", database=False)
