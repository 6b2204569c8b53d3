"""The sweeper's own queue, end to end in the configuration: routing, beat and compose's workers."""

from django.conf import settings

from pru_app.celery import app
from tests.deploy_files import load_compose

SWEEP_TASK = "chat.tasks.broadcasts_sweep_task"


def test_the_sweep_is_routed_to_its_own_queue_and_nothing_else_is():
    assert app.amqp.router.route({}, SWEEP_TASK)["queue"].name == settings.CELERY_SWEEPER_QUEUE
    assert f"{settings.CELERY_TASK_DEFAULT_QUEUE}.sweeper" == settings.CELERY_SWEEPER_QUEUE
    for other in ("chat.tasks.broadcast_chunk_task", "chat.tasks.fetch_images_task", "chat.tasks.verify_images_task"):
        assert app.amqp.router.route({}, other)["queue"].name != settings.CELERY_SWEEPER_QUEUE
    assert settings.CELERY_BEAT_SCHEDULE["broadcasts-sweep"]["options"]["queue"] == settings.CELERY_SWEEPER_QUEUE


def test_compose_runs_a_worker_for_the_sweepers_queue_alone_and_the_default_worker_reads_it_too():
    services = load_compose()[0]["services"]
    sweeper = services["sweeper"]["environment"]
    assert sweeper["CELERY_WORKER_QUEUES"] == "${CELERY_SWEEPER_QUEUE:-celery.sweeper}"
    assert (sweeper["CELERY_WORKER_NAME"], str(sweeper["CELERY_WORKER_CONCURRENCY"])) == ("sweeper", "1")
    assert "sweeper@" in " ".join(services["sweeper"]["healthcheck"]["test"])
    # The default worker reads every queue but the chunks' (CELERY_TASK_QUEUES): the sweeper's included.
    worker = services["worker"]["environment"]
    assert "CELERY_WORKER_QUEUES" not in worker
    assert "sweeper" not in worker.get("CELERY_WORKER_EXCLUDE_QUEUES", "")
