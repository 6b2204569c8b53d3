"""A queued broadcast run by a real Celery worker (Redis broker): JSON lines that keep the request id, and Sentry."""

import time

import pytest
import structlog
from django.contrib.auth import get_user_model
from django.utils import timezone

from chat.broadcasts.queue import chunks_enqueue
from chat.broadcasts.sending import broadcast_create
from chat.models import Broadcast, BroadcastStatus, Image, ImageStatus
from chat.tests.celery_worker import running_celery_worker, wait_until_broadcast_finished

from .conftest import parse_json_lines

pytestmark = pytest.mark.django_db(transaction=True)

BROKER_URL = "redis://127.0.0.1:6379/13"
REQUEST_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def worker(tmp_path, sentry_ingest):
    """A real worker on its own queue; yields its output file."""
    output = tmp_path / "worker.log"
    with running_celery_worker(
        broker_url=BROKER_URL, output_path=output, env_overrides={"SENTRY_DSN": sentry_ingest.dsn}
    ):
        yield output


def test_worker_lines_are_json_and_carry_the_task_id_and_the_request_id_that_queued_it(worker, sentry_ingest):
    staff = get_user_model().objects.create_user(username="staff", password="pw-tests-only", is_staff=True)
    get_user_model().objects.create_user(username="reader", password="pw-tests-only")
    image = Image.objects.create(
        photo_id=1,
        source_url="https://photos.test/1.jpeg",
        title="One",
        status=ImageStatus.STORED,
        file="images/1.jpeg",
        stored_at=timezone.now(),
    )
    broadcast = broadcast_create(image_ids=[image.pk], sent_by=staff)

    # As the admin request that queues it would: django-structlog carries its context to the worker.
    with structlog.contextvars.bound_contextvars(request_id=REQUEST_ID):
        assert chunks_enqueue(broadcast_id=broadcast.pk) == 1
    assert wait_until_broadcast_finished(broadcast).status == BroadcastStatus.SUCCEEDED
    assert sentry_ingest.wait_for(lambda server: server.transactions, timeout=15)

    # The worker logs task_succeeded after the task has returned (and the row was saved): wait for it.
    lines = _wait_for_worker_line(worker, "task_succeeded")
    by_event = {line["event"]: line for line in lines}
    started, finished = by_event["task_started"], by_event["broadcast.finished"]
    assert started["task"] == "chat.tasks.broadcast_chunk_task" and started["request_id"] == REQUEST_ID
    assert finished["task_id"] == started["task_id"] and finished["request_id"] == REQUEST_ID
    assert (finished["broadcast_id"], finished["created"]) == (broadcast.pk, 2)
    assert by_event["task_succeeded"]["task_id"] == started["task_id"]

    # One transaction per chunk (here the only one).
    chunks = [item for item in sentry_ingest.transactions if item["transaction"] == "broadcast_chunk"]
    assert [item["contexts"]["trace"]["data"]["created"] for item in chunks] == [2]
    assert Broadcast.objects.get(pk=broadcast.pk).created_count == 2


def _wait_for_worker_line(output, event, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        text = output.read_text()
        # Only whole lines: the worker may be half-way through writing the next one.
        lines = parse_json_lines(text[: text.rfind("\n") + 1])
        if any(line["event"] == event for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)
