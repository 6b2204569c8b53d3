"""Large broadcasts go through a real Celery worker and a real Redis broker."""

import os
import subprocess
import sys
import time

import pytest
from django.db import connection

from chat.models import Broadcast, BroadcastStatus, Message
from chat.services.broadcasts import broadcast_send
from chat.tests.subprocess_helpers import PROJECT_ROOT
from pru_app.celery import app as celery_app

BROKER_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def celery_worker_process(settings):
    """A worker on its own queue, reading the test database; the app here publishes to it."""
    queue = f"pru-test-{os.getpid()}"
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="pru_app.settings_test",
        DATABASE_URL=_database_url(),
        CELERY_BROKER_URL=BROKER_URL,
        LOG_FORMAT="json",
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "pru_app", "worker", "--pool", "solo", "-Q", queue, "--without-heartbeat",
         "--without-gossip", "--without-mingle", "-l", "INFO"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    previous = {key: celery_app.conf[key] for key in ("broker_url", "task_always_eager", "task_default_queue")}
    celery_app.conf.update(broker_url=BROKER_URL, task_always_eager=False, task_default_queue=queue)
    settings.CELERY_BROKER_URL = BROKER_URL
    settings.BROADCAST_QUEUE_FROM_MESSAGES = 4
    try:
        yield worker
    finally:
        celery_app.conf.update(previous)
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


def _database_url():
    database = connection.settings_dict
    return f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"


def _wait_for(broadcast, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        broadcast.refresh_from_db()
        if broadcast.status in (BroadcastStatus.SUCCEEDED, BroadcastStatus.FAILED):
            return broadcast
        time.sleep(0.2)
    raise AssertionError(f"broadcast still {broadcast.status} after {timeout}s")


@pytest.mark.django_db(transaction=True)
def test_a_broadcast_over_the_threshold_is_queued_and_a_worker_runs_it(celery_worker_process, make_user, make_image):
    for _ in range(3):
        make_user()
    images = [make_image(), make_image()]
    broadcast = broadcast_send(image_ids=[image.pk for image in images])
    assert Broadcast.objects.get(pk=broadcast.pk).status == BroadcastStatus.QUEUED

    finished = _wait_for(broadcast)
    assert finished.status == BroadcastStatus.SUCCEEDED, finished.error
    assert (finished.chat_count, finished.created_count) == (3, 6)
    assert Message.objects.count() == 6


@pytest.mark.django_db
def test_a_broadcast_under_the_threshold_runs_at_once(settings, make_user, make_image):
    settings.CELERY_BROKER_URL = BROKER_URL
    settings.BROADCAST_QUEUE_FROM_MESSAGES = 100
    make_user()
    broadcast = broadcast_send(image_ids=[make_image().pk])
    assert broadcast.status == BroadcastStatus.SUCCEEDED and broadcast.created_count == 1


@pytest.mark.django_db
def test_without_a_broker_every_broadcast_runs_at_once(settings, make_user, make_image):
    settings.CELERY_BROKER_URL = ""
    settings.BROADCAST_QUEUE_FROM_MESSAGES = 1
    make_user()
    make_user()
    broadcast = broadcast_send(image_ids=[make_image().pk])
    assert broadcast.status == BroadcastStatus.SUCCEEDED and broadcast.created_count == 2
