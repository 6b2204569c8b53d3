"""Real Celery workers and beat in child processes, on their own queue of a real Redis broker, for tests."""

import contextlib
import os
import signal
import subprocess
import sys
import time

from django.db import connection
from django.test import override_settings

from chat.models import BroadcastStatus
from chat.tests.subprocess_helpers import PROJECT_ROOT
from pru_app.celery import app as celery_app


def new_queue_name() -> str:
    return f"pru-test-{os.getpid()}-{time.monotonic_ns()}"


def sweeper_queue(queue: str) -> str:
    """The sweeper's queue beside a default queue, as pru_app.settings derives CELERY_SWEEPER_QUEUE."""
    return f"{queue}.sweeper"


def child_environment(*, broker_url: str, queue: str, env_overrides: dict | None = None) -> dict:
    """The environment of a worker or beat: this test database, the broker, the queue, JSON logs."""
    database = connection.settings_dict
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_", "SENTRY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="pru_app.settings",
        DJANGO_SECRET_KEY="celery-worker-tests-only-" + "x" * 40,
        DATABASE_URL=(
            f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}"
        ),
        CELERY_BROKER_URL=broker_url,
        CELERY_TASK_DEFAULT_QUEUE=queue,
        LOG_FORMAT="json",
        **(env_overrides or {}),
    )
    return env


@contextlib.contextmanager
def publishing_to(*, broker_url: str, queue: str):
    """This process's tasks go to broker_url's queue (and not run eagerly) inside the block."""
    previous = {key: celery_app.conf[key] for key in ("broker_url", "task_always_eager", "task_default_queue")}
    celery_app.conf.update(broker_url=broker_url, task_always_eager=False, task_default_queue=queue)
    _forget_broker_connections()
    # The queues of their own beside the default one, named as settings names them for a worker
    # whose CELERY_TASK_DEFAULT_QUEUE is `queue` (pru_app.celery.route_task reads them at each publish).
    try:
        with override_settings(**own_queues(queue)):
            yield
    finally:
        celery_app.conf.update(previous)
        _forget_broker_connections()


@contextlib.contextmanager
def celery_process(*arguments, broker_url: str, queue: str, output_path, env_overrides: dict | None = None):
    """`celery --app pru_app --quiet <arguments>` in its own process group; stopped (TERM, then KILL) on exit."""
    env = child_environment(broker_url=broker_url, queue=queue, env_overrides=env_overrides)
    with open(output_path, "ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "--app", "pru_app", "--quiet", *arguments],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop_process_group(process)


def stop_process_group(process, *, timeout=20):
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def own_queues(queue: str) -> dict[str, str]:
    """The settings of the queues a worker with CELERY_TASK_DEFAULT_QUEUE=queue derives from it."""
    return {"CELERY_SWEEPER_QUEUE": sweeper_queue(queue), "CELERY_BROADCAST_QUEUE": f"{queue}.broadcasts"}


def worker_arguments(*, queue: str, pool: str = "solo", concurrency: int = 1, name: str | None = None) -> list[str]:
    """As deploy/compose/worker/start runs it, on the test's queue and the queues derived from it."""
    arguments = [
        "worker",
        "--pool",
        pool,
        "-Q",
        ",".join([queue, *own_queues(queue).values()]),
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]
    if pool != "solo":
        arguments += ["--concurrency", str(concurrency)]
    if name:
        arguments += ["--hostname", name]
    return arguments


@contextlib.contextmanager
def running_celery_worker(
    *,
    broker_url: str,
    output_path,
    env_overrides: dict | None = None,
    queue: str | None = None,
    pool: str = "solo",
    concurrency: int = 1,
    name: str | None = None,
):
    """Start a worker (as deploy/compose/worker/start does) and publish this process's tasks to it."""
    queue = queue or new_queue_name()
    with (
        publishing_to(broker_url=broker_url, queue=queue),
        celery_process(
            *worker_arguments(queue=queue, pool=pool, concurrency=concurrency, name=name),
            broker_url=broker_url,
            queue=queue,
            output_path=output_path,
            env_overrides=env_overrides,
        ) as process,
    ):
        yield process


def _forget_broker_connections():
    """The app caches its connection pool: without this, a new broker_url would go unused."""
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
        celery_app._pool = None
    celery_app.amqp._producer_pool = None


def wait_until_broadcast_finished(broadcast, timeout=60):
    """Poll the database until the workers have finished the broadcast."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        broadcast.refresh_from_db()
        if broadcast.status in (BroadcastStatus.SUCCEEDED, BroadcastStatus.FAILED):
            return broadcast
        time.sleep(0.2)
    raise AssertionError(f"broadcast still {broadcast.status} after {timeout}s")
