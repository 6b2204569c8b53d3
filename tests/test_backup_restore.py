"""The backup drill: bin/backup, wipe the database and the bucket, bin/restore, and every image is intact, hash-equal."""

import hashlib
import shutil
import subprocess
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql

from deploy.local_stack import PROJECT_ROOT
from devservers.s3 import ACCESS_KEY, SECRET_KEY
from tests.stack_support import clean_environment, stack_database

PHOTOS = 12


def _run(command, environment, timeout=180):
    return subprocess.run(command, cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=timeout)


def _manage(environment, *arguments):
    return _run([str(PROJECT_ROOT / ".venv" / "bin" / "python"), "manage.py", *arguments], environment)


def _recreate_empty(database_url):
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin = psycopg2.connect(urlunsplit(parts._replace(path="/postgres")), connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        admin.close()


def _stored_rows(database_url):
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT file, sha256, status FROM chat_image ORDER BY id")
        return cursor.fetchall()


def test_a_wiped_database_and_bucket_come_back_from_the_backup_intact(photo_api, s3_server, tmp_path):
    photo_api.listing = list(range(1, PHOTOS + 1))
    bucket = s3_server.create_bucket(f"drill-{uuid.uuid4().hex[:10]}")
    backups = tmp_path / "backups"
    with stack_database("backup") as database_url:
        environment = clean_environment() | {
            "DJANGO_SETTINGS_MODULE": "pru_app.settings",
            "DJANGO_SECRET_KEY": "backup-drill-only-" + "x" * 40,
            "DATABASE_URL": database_url,
            "LOG_FORMAT": "json",
            "AWS_STORAGE_BUCKET_NAME": bucket,
            "AWS_S3_ENDPOINT_URL": s3_server.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "IMAGE_API_URL": photo_api.url,
            "IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
            "BACKUP_DIR": str(backups),
            "PRU_SERVE_RUN_DIR": str(tmp_path / "no-serve"),
        }
        for step in (("migrate", "--verbosity", "0"), ("fetch_images", "--no-progress")):
            result = _manage(environment, *step)
            assert result.returncode == 0, result.stderr[-3000:]
        before = _stored_rows(database_url)
        assert len(before) == PHOTOS and {status for _, _, status in before} == {"stored"}

        backed_up = _run([str(PROJECT_ROOT / "bin" / "backup"), "--name", "drill"], environment)
        assert backed_up.returncode == 0, backed_up.stderr[-3000:]
        # The originals and their renditions (the test photos share their pixels: one rendition object).
        assert f"objects:  {PHOTOS + 1} (" in backed_up.stdout
        folder = backups / "drill"
        # Nothing new since: the next backup copies no object (each is hard-linked from "drill").
        again = _run([str(PROJECT_ROOT / "bin" / "backup"), "--name", "drill-2"], environment)
        assert again.returncode == 0, again.stderr[-3000:]
        assert (
            f"objects:  {PHOTOS + 1} (" in again.stdout
            and f"copied:   0, {PHOTOS + 1} linked from drill" in again.stdout
        )

        # Wipe both: the database is empty, the bucket is gone.
        _recreate_empty(database_url)
        client = s3_server.client()
        for item in client.list_objects_v2(Bucket=bucket)["Contents"]:
            client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)

        # A damaged backup is refused with the file that is wrong, and nothing claims to be restored.
        victim = folder / "objects" / before[0][0]
        shutil.copy(victim, tmp_path / "saved")
        victim.write_bytes(b"damaged")
        refused = _run([str(PROJECT_ROOT / "bin" / "restore"), str(folder), "--yes"], environment)
        assert refused.returncode != 0 and "does not match the manifest" in refused.stderr
        shutil.copy(tmp_path / "saved", victim)

        # The older backup, restored although a newer one exists.
        restored = _run([str(PROJECT_ROOT / "bin" / "restore"), str(folder), "--yes"], environment)
        assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-3000:]
        assert "All images intact." in restored.stdout and f"checked:        {PHOTOS}" in restored.stdout
        assert "missing:        0" in restored.stdout and "orphans:        0" in restored.stdout

        after = _stored_rows(database_url)
        assert [(key, digest) for key, digest, _ in after] == [(key, digest) for key, digest, _ in before]
        for key, digest, _ in after:
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == digest


def test_bin_serves_default_sqlite_and_media_folder_come_back_from_the_backup_intact(photo_api, tmp_path):
    photo_api.listing = list(range(1, 7))
    database, media, backups = tmp_path / "db.sqlite3", tmp_path / "media", tmp_path / "backups"
    environment = clean_environment() | {
        "DJANGO_SETTINGS_MODULE": "pru_app.settings",
        "DJANGO_SECRET_KEY": "backup-drill-only-" + "x" * 40,
        "DATABASE_URL": f"sqlite:///{database}",
        "DJANGO_MEDIA_ROOT": str(media),
        "LOG_FORMAT": "json",
        "IMAGE_API_URL": photo_api.url,
        "IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
        "BACKUP_DIR": str(backups),
        "PRU_SERVE_RUN_DIR": str(tmp_path / "no-serve"),
    }
    for step in (("migrate", "--verbosity", "0"), ("fetch_images", "--no-progress")):
        result = _manage(environment, *step)
        assert result.returncode == 0, result.stderr[-3000:]
    files = {path.relative_to(media): hashlib.sha256(path.read_bytes()).hexdigest() for path in media.rglob("*.jpg")}
    assert len(files) == 6

    backed_up = _run([str(PROJECT_ROOT / "bin" / "backup"), "--name", "drill"], environment)
    assert backed_up.returncode == 0, backed_up.stderr[-3000:]
    assert (backups / "drill" / "database.sqlite3").is_file()
    again = _run([str(PROJECT_ROOT / "bin" / "backup"), "--name", "drill-2"], environment)
    # Nothing new: the 6 originals and the rendition linked, none copied (renditions are listed with
    # their modification time, as the originals are).
    assert again.returncode == 0 and "copied:   0, 7 linked from drill" in again.stdout, again.stderr[-3000:]
    database.unlink()
    shutil.rmtree(media)

    restored = _run([str(PROJECT_ROOT / "bin" / "restore"), str(backups / "drill"), "--yes"], environment)
    assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-3000:]
    assert "All images intact." in restored.stdout and "checked:        6" in restored.stdout
    assert {
        path.relative_to(media): hashlib.sha256(path.read_bytes()).hexdigest() for path in media.rglob("*.jpg")
    } == files
