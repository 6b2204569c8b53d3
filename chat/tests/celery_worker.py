"""A real Celery worker in a child process, on its own queue of a real Redis broker, for tests."""

import contextlib
import os
import subprocess
import sys
import time

from django.db import connection

from chat.models import BroadcastStatus
from chat.tests.subprocess_helpers import PROJECT_ROOT
from pru_app.celery import app as celery_app


@contextlib.contextmanager
def running_celery_worker(*, broker_url: str, output_path, env_overrides: dict | None = None):
    """Start `celery --quiet worker` (as deploy/compose/worker/start does) and publish this process's tasks to it."""
    queue = f"pru-test-{os.getpid()}-{time.monotonic_ns()}"
    database = connection.settings_dict
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_", "SENTRY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="pru_app.settings",
        DJANGO_SECRET_KEY="celery-worker-tests-only-" + "x" * 40,
        DATABASE_URL=(
            f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}"
        ),
        CELERY_BROKER_URL=broker_url,
        LOG_FORMAT="json",
        **(env_overrides or {}),
    )
    with open(output_path, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "--app", "pru_app", "--quiet", "worker", "--pool", "solo", "-Q", queue,
             "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
            cwd=PROJECT_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
    previous = {key: celery_app.conf[key] for key in ("broker_url", "task_always_eager", "task_default_queue")}
    celery_app.conf.update(broker_url=broker_url, task_always_eager=False, task_default_queue=queue)
    _forget_broker_connections()
    try:
        yield process
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


def wait_until_broadcast_finished(broadcast, timeout=60):
    """Poll the database until the worker has finished the broadcast."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        broadcast.refresh_from_db()
        if broadcast.status in (BroadcastStatus.SUCCEEDED, BroadcastStatus.FAILED):
            return broadcast
        time.sleep(0.2)
    raise AssertionError(f"broadcast still {broadcast.status} after {timeout}s")
