"""A queued broadcast run by a real Celery worker (Redis broker): JSON lines that keep the request id, and Sentry."""

import os
import subprocess
import sys
import time

import pytest
import structlog
from django.contrib.auth import get_user_model
from django.db import connection

from chat.models import Broadcast, BroadcastStatus, Image
from chat.services.broadcasts import broadcast_create
from chat.tasks import broadcast_run_task
from chat.tests.subprocess_helpers import PROJECT_ROOT
from pru_app.celery import app as celery_app

from .conftest import parse_json_lines

pytestmark = pytest.mark.django_db(transaction=True)

BROKER_URL = "redis://127.0.0.1:6379/13"
REQUEST_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def worker(tmp_path, sentry_ingest):
    """`celery --quiet worker` as deploy/compose/worker/start runs it, on its own queue; yields its output file."""
    queue = f"pru-observability-{os.getpid()}"
    settings = connection.settings_dict
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_", "SENTRY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="pru_app.settings",
        DJANGO_SECRET_KEY="observability-tests-only-" + "x" * 40,
        DATABASE_URL=f"postgres://{settings['USER']}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}",
        CELERY_BROKER_URL=BROKER_URL,
        LOG_FORMAT="json",
        SENTRY_DSN=sentry_ingest.dsn,
    )
    output = tmp_path / "worker.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "--app", "pru_app", "--quiet", "worker", "--pool", "solo", "-Q", queue,
             "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
            cwd=PROJECT_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
    previous = {key: celery_app.conf[key] for key in ("broker_url", "task_always_eager", "task_default_queue")}
    celery_app.conf.update(broker_url=BROKER_URL, task_always_eager=False, task_default_queue=queue)
    _forget_broker_connections()
    try:
        yield output
    finally:
        celery_app.conf.update(previous)
        _forget_broker_connections()
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _forget_broker_connections():
    """The app caches its connection pool: without this, a new broker_url would go unused."""
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
        celery_app._pool = None
    celery_app.amqp._producer_pool = None


def _wait_until_finished(broadcast, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        broadcast.refresh_from_db()
        if broadcast.status in (BroadcastStatus.SUCCEEDED, BroadcastStatus.FAILED):
            return broadcast
        time.sleep(0.2)
    raise AssertionError(f"broadcast still {broadcast.status} after {timeout}s")


def test_worker_lines_are_json_and_carry_the_task_id_and_the_request_id_that_queued_it(worker, sentry_ingest):
    staff = get_user_model().objects.create_user(username="staff", password="pw-tests-only", is_staff=True)
    get_user_model().objects.create_user(username="reader", password="pw-tests-only")
    image = Image.objects.create(photo_id=1, source_url="https://photos.test/1.jpeg", title="One")
    broadcast = broadcast_create(image_ids=[image.pk], sent_by=staff)

    # As the admin request that queues it would: django-structlog carries its context to the worker.
    with structlog.contextvars.bound_contextvars(request_id=REQUEST_ID):
        broadcast_run_task.delay(broadcast.pk)
    assert _wait_until_finished(broadcast).status == BroadcastStatus.SUCCEEDED
    assert sentry_ingest.wait_for(lambda server: server.transactions, timeout=15)

    lines = parse_json_lines(worker.read_text())
    by_event = {line["event"]: line for line in lines}
    started, finished = by_event["task_started"], by_event["broadcast.finished"]
    assert started["task"] == "chat.tasks.broadcast_run_task" and started["request_id"] == REQUEST_ID
    assert finished["task_id"] == started["task_id"] and finished["request_id"] == REQUEST_ID
    assert (finished["broadcast_id"], finished["created"]) == (broadcast.pk, 2)
    assert by_event["task_succeeded"]["task_id"] == started["task_id"]

    broadcasts = [item for item in sentry_ingest.transactions if item["transaction"] == "broadcast"]
    assert [item["contexts"]["trace"]["data"]["created"] for item in broadcasts] == [2]
    assert Broadcast.objects.get(pk=broadcast.pk).created_count == 2
