"""fetch_images and verify_images as Celery tasks (a real worker on Redis), on beat's schedule, one fetch at a time."""

import subprocess
import sys
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection

from chat.images.fetch_lock import FetchAlreadyRunning
from chat.images.ingestion import image_fetch_all
from chat.models import Image, ImageStatus
from chat.tasks import fetch_images_task, verify_images_task
from chat.tests.celery_worker import running_celery_worker
from chat.tests.subprocess_helpers import PROJECT_ROOT
from devservers.s3 import ACCESS_KEY, SECRET_KEY
from pru_app.beat_schedules import crontab_from_line, image_beat_schedule
from pru_app.celery import app as celery_app

# Not test_tasks.py's database: kombu keeps one global pool per broker URL, and the worker helper
# closes it on exit, so a second worker test on the same URL in one session found it closed.
BROKER_URL = "redis://127.0.0.1:6379/14"


def wait_for(predicate, *, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout}s")


def storage_environment(photo_api, s3_storage) -> dict[str, str]:
    return {
        "AWS_STORAGE_BUCKET_NAME": s3_storage.bucket_name,
        "AWS_S3_ENDPOINT_URL": s3_storage.endpoint_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "IMAGE_API_URL": photo_api.url,
        "IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
        "IMAGE_FETCH_RETRIES": "0",
    }


def test_beat_schedules_both_jobs_from_the_settings():
    schedule = celery_app.conf.beat_schedule
    assert schedule["images-fetch"]["task"] == "chat.tasks.fetch_images_task"
    assert schedule["images-verify"]["task"] == "chat.tasks.verify_images_task"
    assert schedule["images-verify"]["kwargs"] == {"repair": True}
    assert set(celery_app.tasks) >= {"chat.tasks.fetch_images_task", "chat.tasks.verify_images_task"}
    entries = image_beat_schedule(fetch="*/5 * * * *", verify="", verify_repair=False)
    assert list(entries) == ["images-fetch"] and entries["images-fetch"]["schedule"] == crontab_from_line(
        "*/5 * * * *", key="x"
    )
    with pytest.raises(ImproperlyConfigured, match="IMAGE_VERIFY_SCHEDULE must be a crontab line of 5 fields"):
        image_beat_schedule(fetch="", verify="daily", verify_repair=True)


@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_the_fetch_task_then_the_verify_task_repairs_what_was_deleted(
    photo_api, s3_storage, s3_server, settings, tmp_path
):
    photo_api.listing = list(range(1, 9))
    settings.CELERY_BROKER_URL = BROKER_URL
    with running_celery_worker(
        broker_url=BROKER_URL,
        output_path=tmp_path / "worker.log",
        env_overrides=storage_environment(photo_api, s3_storage),
    ):
        fetch_images_task.delay()
        wait_for(
            lambda: Image.objects.filter(status=ImageStatus.STORED).count() == 8, what="8 stored images", timeout=90
        )
        victim = Image.objects.order_by("pk").first()
        s3_server.client().delete_object(Bucket=s3_storage.bucket_name, Key=victim.file.name)

        verify_images_task.delay(repair=True)
        wait_for(lambda: Image.objects.filter(verified_at__isnull=False).count() == 8, what="8 verified rows")
    victim_after = Image.objects.get(pk=victim.pk)
    assert victim_after.status == ImageStatus.STORED and victim_after.stored_at > victim.stored_at
    assert (
        s3_server.client().head_object(Bucket=s3_storage.bucket_name, Key=victim.file.name)["ContentLength"]
        == victim.byte_size
    )
    log = (tmp_path / "worker.log").read_text()
    assert '"event": "image_verify.missing"' in log and '"event": "image_verify.repaired"' in log


@pytest.mark.django_db(transaction=True)
def test_a_second_fetch_finds_the_run_going_and_no_photo_is_downloaded_twice(photo_api, s3_storage, settings):
    photo_api.listing = list(range(1, 11))
    photo_api.latency = 0.15
    database = connection.settings_dict
    environment = {
        "DJANGO_SETTINGS_MODULE": "pru_app.settings",
        "DJANGO_SECRET_KEY": "lock-tests-only-" + "x" * 40,
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}",
        "LOG_FORMAT": "json",
        **storage_environment(photo_api, s3_storage),
    }
    first = subprocess.Popen(
        [sys.executable, "manage.py", "fetch_images", "--no-progress", "--page-size", "5", "--workers", "2"],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: photo_api.image_requests(), what="the first run's first download", timeout=60)
        with pytest.raises(FetchAlreadyRunning, match="found a fetch run going"):
            image_fetch_all(api_url=photo_api.url)
        with pytest.raises(CommandError, match="Not started: found a fetch run going"):
            call_command("fetch_images", "--api-url", photo_api.url, "--no-progress")
        # The task (run here) says so instead of failing.
        assert "found a fetch run going" in fetch_images_task.apply().get()["skipped"]
        stdout, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr[-3000:]
    assert "newly stored:   10" in stdout
    requested = photo_api.image_requests()
    assert len(requested) == len(set(requested)) == 10
    # The lock went with the first run: the next run starts (and finds everything stored).
    assert image_fetch_all(api_url=photo_api.url).already_stored == 10
