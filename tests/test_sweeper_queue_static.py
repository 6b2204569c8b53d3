"""The sweeper's own queue, end to end in the configuration: routing, beat, compose and the worker start script."""

import subprocess

from django.conf import settings

from pru_app.celery import app
from tests.deploy_files import PROJECT_ROOT, load_compose

SWEEP_TASK = "chat.tasks.broadcasts_sweep_task"


def test_the_sweep_is_routed_to_its_own_queue_and_chunks_are_not():
    assert app.amqp.router.route({}, SWEEP_TASK)["queue"].name == settings.CELERY_SWEEPER_QUEUE
    assert f"{settings.CELERY_TASK_DEFAULT_QUEUE}.sweeper" == settings.CELERY_SWEEPER_QUEUE
    assert app.amqp.router.route({}, "chat.tasks.broadcast_chunk_task")["queue"].name == (
        settings.CELERY_TASK_DEFAULT_QUEUE
    )
    assert settings.CELERY_BEAT_SCHEDULE["broadcasts-sweep"]["options"]["queue"] == settings.CELERY_SWEEPER_QUEUE


def test_compose_runs_a_worker_for_the_sweepers_queue_alone():
    services = load_compose()[0]["services"]
    sweeper = services["sweeper"]
    assert sweeper["command"] == ["deploy/compose/worker/start"]
    assert sweeper["environment"]["CELERY_WORKER_ROLE"] == "sweeper"
    assert "sweeper@" in " ".join(sweeper["healthcheck"]["test"])


def _queues_of_start_script(**env) -> str:
    """The --queues the worker start script passes to celery (it is run with celery and wait_for_db stubbed)."""
    script = (PROJECT_ROOT / "deploy/compose/worker/start").read_text()
    queues_block = script[script.index("default_queue=") : script.index("python manage.py wait_for_db")]
    result = subprocess.run(
        ["bash", "-c", f'set -o errexit -o nounset\n{queues_block}\necho "$queues $concurrency $hostname"'],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_every_worker_reads_the_sweepers_queue_and_the_sweeper_reads_only_it():
    assert _queues_of_start_script() == "celery,celery.sweeper 2 worker@%h"
    assert _queues_of_start_script(CELERY_TASK_DEFAULT_QUEUE="q") == "q,q.sweeper 2 worker@%h"
    assert _queues_of_start_script(CELERY_WORKER_ROLE="sweeper") == "celery.sweeper 1 sweeper@%h"
