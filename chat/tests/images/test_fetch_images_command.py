"""fetch_images and ensure_bucket as operators run them: in-process and as killed-and-rerun child processes."""

import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from chat.images.ingestion import PAGES_IN_FLIGHT
from chat.models import Image, ImageStatus
from chat.tests.subprocess_helpers import PROJECT_ROOT
from devservers.s3 import ACCESS_KEY, SECRET_KEY, S3Server, free_port


def bucket_keys(s3_server, bucket):
    paginator = s3_server.client().get_paginator("list_objects_v2")
    return sorted(
        item["Key"] for page in paginator.paginate(Bucket=bucket, Prefix="images/") for item in page.get("Contents", [])
    )


def run_command(*args, **options):
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("fetch_images", *args, stdout=out, stderr=err, **options)
    except CommandError as error:
        return out.getvalue(), err.getvalue(), error
    return out.getvalue(), err.getvalue(), None


@pytest.mark.django_db
def test_the_command_prints_a_line_per_page_and_a_summary(photo_api, s3_storage):
    out, _, error = run_command("--api-url", photo_api.url, "--page-size", "10", "--workers", "3")
    assert error is None
    assert f"Fetching photos from {photo_api.url} into S3 bucket '{s3_storage.bucket_name}'" in out
    assert "page at offset 10: 10 listed, 10 stored, 0 already stored, 0 duplicates, 0 failed" in out
    for line in (
        "pages:          3",
        "photos seen:    30",
        "newly stored:   30",
        "already stored: 0",
        "failed:         0",
    ):
        assert line in out
    assert "bytes:" in out and "seconds:" in out and "photos/s:" in out


@pytest.mark.django_db
def test_failures_are_listed_with_their_reasons_and_make_the_command_fail(photo_api, s3_storage):
    photo_api.set_photo_fault(3, "missing")
    photo_api.set_photo_fault(4, "not-image")
    out, _, error = run_command("--api-url", photo_api.url, "--limit", "6")
    assert str(error) == "2 photo(s) failed; they are retried on the next run."
    assert "failed:         2 (download failed: 1, not an allowed image: 1)" in out
    assert f"    - {photo_api.image_url(3)}: HTTP 404" in out
    assert "newly stored:   4" in out


@pytest.mark.django_db
def test_a_bad_page_is_a_command_error_that_says_what_is_kept(photo_api, s3_storage):
    photo_api.set_page_fault(0, "missing-fields")
    _, _, error = run_command("--api-url", photo_api.url)
    assert "Stopped: photo API: page at offset 0 has no 'photos' list" in str(error)
    assert "Photos stored before this stay stored; run again to resume." in str(error)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--api-url", "ftp://photos.example/list"], "scheme 'ftp' is not allowed"),
        (["--page-size", "0"], "invalid integer from 1 to 1000 value: '0'"),
        (["--workers", "500"], "invalid integer from 1 to 64 value: '500'"),
        (["--limit", "-3"], "invalid positive integer value: '-3'"),
    ],
)
def test_bad_options_are_refused_at_the_edge(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("fetch_images", *args, stdout=io.StringIO())


@pytest.mark.django_db
def test_an_unreachable_storage_is_a_clear_command_error(photo_api, s3_storage, settings):
    options = {**settings.STORAGES["default"]["OPTIONS"], "endpoint_url": f"http://127.0.0.1:{free_port()}"}
    settings.STORAGES = {**settings.STORAGES, "default": {**settings.STORAGES["default"], "OPTIONS": options}}
    started = time.monotonic()
    _, _, error = run_command("--api-url", photo_api.url)
    assert "Object storage unavailable, nothing more was stored" in str(error)
    assert "is not usable: EndpointConnectionError" in str(error)
    assert time.monotonic() - started < 15
    assert not Image.objects.exists()


def child_env(s3_server, bucket, api_url):
    database = connection.settings_dict
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "AWS_", "IMAGE_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="pru_app.settings_test",
        DATABASE_URL=f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        AWS_STORAGE_BUCKET_NAME=bucket,
        AWS_S3_ENDPOINT_URL=s3_server.endpoint_url,
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        IMAGE_API_URL=api_url,
        IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS="true",
        LOG_LEVEL="WARNING",
    )
    return env


@pytest.mark.django_db(transaction=True)
def test_a_run_killed_halfway_leaves_no_false_rows_and_the_rerun_completes_without_orphans(
    photo_api, s3_storage, s3_server
):
    photo_api.listing = list(range(1, 61))
    photo_api.latency = 0.1  # slow enough to kill it in the middle
    bucket = s3_storage.bucket_name
    page_size = 5
    child = subprocess.Popen(
        [sys.executable, "manage.py", "fetch_images", "--page-size", str(page_size), "--workers", "4"],
        cwd=PROJECT_ROOT,
        env=child_env(s3_server, bucket, photo_api.url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while Image.objects.filter(status=ImageStatus.STORED).count() < 12:
            assert child.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline, "nothing was stored in time"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    stored_after_kill = dict(Image.objects.filter(status=ImageStatus.STORED).values_list("file", "photo_id"))
    keys_after_kill = set(bucket_keys(s3_server, bucket))
    assert 12 <= len(stored_after_kill) < 60
    # No row claims a file it lacks.
    assert set(stored_after_kill) <= keys_after_kill
    # Objects without a row are only the pages that were in flight.
    assert len(keys_after_kill - set(stored_after_kill)) <= PAGES_IN_FLIGHT * page_size

    photo_api.latency = 0
    rerun = subprocess.run(
        [sys.executable, "manage.py", "fetch_images", "--page-size", str(page_size), "--workers", "4"],
        cwd=PROJECT_ROOT,
        env=child_env(s3_server, bucket, photo_api.url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"already stored: {len(stored_after_kill)}" in rerun.stdout
    assert Image.objects.count() == 60 == Image.objects.filter(status=ImageStatus.STORED).count()
    stored_keys = sorted(Image.objects.values_list("file", flat=True))
    assert bucket_keys(s3_server, bucket) == stored_keys  # no orphans, no second copies
    assert len(set(Image.objects.values_list("photo_id", flat=True))) == 60


@pytest.mark.django_db
def test_ensure_bucket_creates_a_private_bucket_once(s3_server, s3_storage, settings):
    bucket = f"made-by-command-{time.monotonic_ns()}"
    options = {**settings.STORAGES["default"]["OPTIONS"], "bucket_name": bucket}
    settings.STORAGES = {**settings.STORAGES, "default": {**settings.STORAGES["default"], "OPTIONS": options}}
    first, second = io.StringIO(), io.StringIO()
    call_command("ensure_bucket", stdout=first)
    call_command("ensure_bucket", stdout=second)
    assert f"Created S3 bucket '{bucket}'" in first.getvalue() and "(private)" in first.getvalue()
    assert "already exists" in second.getvalue()
    client = s3_server.client()
    grants = client.get_bucket_acl(Bucket=bucket)["Grants"]
    assert [grant["Permission"] for grant in grants] == ["FULL_CONTROL"]
    assert grants[0]["Grantee"]["Type"] == "CanonicalUser"
    with pytest.raises(client.exceptions.ClientError, match="NoSuchBucketPolicy"):
        client.get_bucket_policy(Bucket=bucket)


@pytest.mark.django_db
def test_ensure_bucket_fails_clearly_when_the_storage_is_unreachable(s3_storage, settings):
    options = {**settings.STORAGES["default"]["OPTIONS"], "endpoint_url": f"http://127.0.0.1:{free_port()}"}
    settings.STORAGES = {**settings.STORAGES, "default": {**settings.STORAGES["default"], "OPTIONS": options}}
    with pytest.raises(CommandError, match=r"Object storage unavailable: .* is unreachable: EndpointConnectionError"):
        call_command("ensure_bucket", stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.django_db
def test_ensure_bucket_waits_for_a_storage_that_starts_late(s3_storage, settings):
    late = S3Server()
    options = {
        **settings.STORAGES["default"]["OPTIONS"],
        "endpoint_url": late.endpoint_url,
        "bucket_name": "late-bucket",
    }
    settings.STORAGES = {**settings.STORAGES, "default": {**settings.STORAGES["default"], "OPTIONS": options}}
    starter = threading.Timer(1.5, late.start)
    starter.start()
    try:
        out, err = io.StringIO(), io.StringIO()
        call_command("ensure_bucket", "--wait", "30", "--interval", "0.5", stdout=out, stderr=err)
        assert "Created S3 bucket 'late-bucket'" in out.getvalue()
        assert "Storage unavailable, retrying" in err.getvalue()
        assert "late-bucket" in [bucket["Name"] for bucket in late.client().list_buckets()["Buckets"]]
    finally:
        starter.join()
        late.stop()


def test_ensure_bucket_on_the_file_system_has_nothing_to_create(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}
    out = io.StringIO()
    call_command("ensure_bucket", stdout=out)
    assert f"No bucket to create: files go to the file system at {tmp_path}" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_on_a_terminal_a_progress_bar_replaces_the_page_lines(photo_api, s3_storage, s3_server):
    import fcntl
    import pty
    import struct
    import termios

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a real terminal's size
    try:
        result = subprocess.run(
            [sys.executable, "manage.py", "fetch_images", "--page-size", "10"],
            cwd=PROJECT_ROOT,
            env=child_env(s3_server, s3_storage.bucket_name, photo_api.url),
            stdout=subprocess.PIPE,
            stderr=secondary,
            text=True,
            timeout=60,
        )
        os.close(secondary)
        secondary = None
        terminal = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child's end is closed and drained
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        if secondary is not None:
            os.close(secondary)
        os.close(primary)
    assert result.returncode == 0
    bar = terminal.decode(errors="replace")
    assert "100%|" in bar and "30/30 [" in bar and "photo/s]" in bar
    assert "page at offset" not in result.stdout and "newly stored:   30" in result.stdout
