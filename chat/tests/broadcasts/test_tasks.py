"""Large broadcasts go through real Celery workers and a real Redis broker, one task per chunk."""

import pytest

from chat.broadcasts.sending import broadcast_send
from chat.models import Broadcast, BroadcastStatus, ChunkStatus, Message
from chat.tests.celery_worker import running_celery_worker, wait_until_broadcast_finished

BROKER_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def celery_worker_process(settings, tmp_path):
    """A real worker on its own queue; large broadcasts in this process are published to it."""
    settings.CELERY_BROKER_URL = BROKER_URL
    settings.BROADCAST_QUEUE_FROM_MESSAGES = 4
    settings.BROADCAST_CHUNK_MESSAGES = 2
    with running_celery_worker(broker_url=BROKER_URL, output_path=tmp_path / "worker.log") as worker:
        yield worker


@pytest.mark.django_db(transaction=True)
def test_a_broadcast_over_the_threshold_is_queued_as_chunks_and_a_worker_runs_them(
    celery_worker_process, make_user, make_image
):
    for _ in range(3):
        make_user()
    images = [make_image(), make_image()]
    outcome = broadcast_send(image_ids=[image.pk for image in images])
    assert outcome.queued and not outcome.broker_unavailable
    broadcast = outcome.broadcast
    assert Broadcast.objects.get(pk=broadcast.pk).chunk_count == 3

    finished = wait_until_broadcast_finished(broadcast)
    assert finished.status == BroadcastStatus.SUCCEEDED, finished.error
    assert (finished.chat_count, finished.created_count) == (3, 6)
    assert Message.objects.count() == 6
    assert set(finished.chunks.values_list("status", flat=True)) == {ChunkStatus.SUCCEEDED}


@pytest.mark.django_db
def test_a_broadcast_under_the_threshold_runs_at_once(settings, make_user, make_image):
    settings.CELERY_BROKER_URL = BROKER_URL
    settings.BROADCAST_QUEUE_FROM_MESSAGES = 100
    make_user()
    broadcast = broadcast_send(image_ids=[make_image().pk]).broadcast
    assert broadcast.status == BroadcastStatus.SUCCEEDED and broadcast.created_count == 1


@pytest.mark.django_db
def test_without_a_broker_every_broadcast_runs_at_once(settings, make_user, make_image):
    settings.CELERY_BROKER_URL = ""
    settings.BROADCAST_QUEUE_FROM_MESSAGES = 1
    make_user()
    make_user()
    broadcast = broadcast_send(image_ids=[make_image().pk]).broadcast
    assert broadcast.status == BroadcastStatus.SUCCEEDED and broadcast.created_count == 2


def test_chunk_tasks_and_sweeps_go_to_their_own_queues_and_the_other_tasks_to_the_default_one(settings):
    from pru_app.celery import app

    settings.CELERY_BROADCAST_QUEUE = "pru-test.broadcasts"
    assert app.amqp.router.route({}, "chat.tasks.broadcast_chunk_task", (1,), {})["queue"].name == "pru-test.broadcasts"
    settings.CELERY_SWEEPER_QUEUE = "pru-test.sweeper"
    assert app.amqp.router.route({}, "chat.tasks.broadcasts_sweep_task", (), {})["queue"].name == "pru-test.sweeper"
    assert (
        app.amqp.router.route({}, "chat.tasks.fetch_images_task", (), {})["queue"].name == app.conf.task_default_queue
    )
