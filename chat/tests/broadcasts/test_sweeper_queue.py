"""The sweeper has a queue of its own: hundreds of queued chunk tasks cannot hold a sweep back.

Real Redis, a real `celery worker` (consuming its queues as deploy/compose/worker/start does) and a
real `celery beat`. A pg_sleep trigger makes every chunk last CHUNK_SECONDS, so the chunk backlog
outlasts the test's bound many times over; a sweep that waited behind it would expire unrun.
"""

import datetime as dt
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from chat.broadcasts.queue import chunks_enqueue
from chat.broadcasts.sending import broadcast_create
from chat.models import BroadcastChunk, Chat, ChunkStatus
from chat.tests.broadcasts.test_fault_drills import RedisServer
from chat.tests.celery_worker import celery_process, new_queue_name, publishing_to, worker_arguments
from devservers.s3 import free_port

pytestmark = pytest.mark.django_db(transaction=True)

CHUNKS = 300
CHUNK_SECONDS = 0.15  # 300 chunks: a backlog of 45 s and more
SWEEP_SECONDS = 2
SWEEP_BOUND_SECONDS = 15  # beat's start, one interval, the chunk under way: far below the backlog
SETTINGS = {"BROADCAST_SWEEP_SECONDS": str(SWEEP_SECONDS), "BROADCAST_CHUNK_MESSAGES": "1"}


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(port=free_port(), directory=tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def slow_chunks():
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION sweeper_test_slow_insert() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_sleep({CHUNK_SECONDS}); RETURN NULL; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER sweeper_test_slow_insert BEFORE INSERT ON chat_message "
            "FOR EACH STATEMENT EXECUTE FUNCTION sweeper_test_slow_insert()"
        )
        # As chat/tests/race_gates.py: the chunk's insert skips ordinary triggers (replica mode).
        cursor.execute("ALTER TABLE chat_message ENABLE ALWAYS TRIGGER sweeper_test_slow_insert")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS sweeper_test_slow_insert ON chat_message")
        cursor.execute("DROP FUNCTION IF EXISTS sweeper_test_slow_insert()")


def test_a_sweep_runs_on_time_behind_hundreds_of_queued_chunks(redis_server, slow_chunks, make_image, tmp_path):
    user_model = get_user_model()
    users = user_model.objects.bulk_create(user_model(username=f"backlog{number}") for number in range(CHUNKS))
    Chat.objects.bulk_create(Chat(user=user) for user in users)
    backlog = broadcast_create(image_ids=[make_image().pk], chunk_messages=1)
    assert backlog.chunks.count() == CHUNKS
    # A broadcast whose runner died: its chunk says running with a lease long gone. Only a sweep frees it.
    lost = broadcast_create(image_ids=[make_image().pk], chunk_messages=10 * CHUNKS)
    lost_chunk = lost.chunks.get()
    BroadcastChunk.objects.filter(pk=lost_chunk.pk).update(
        status=ChunkStatus.RUNNING,
        attempts=1,
        claimed_at=timezone.now() - dt.timedelta(hours=1),
        leased_until=timezone.now() - dt.timedelta(minutes=30),
    )

    queue = new_queue_name()
    log = tmp_path / "celery.log"
    common = {"broker_url": redis_server.url, "queue": queue, "output_path": log, "env_overrides": SETTINGS}
    with (
        publishing_to(broker_url=redis_server.url, queue=queue),
        celery_process(*worker_arguments(queue=queue), **common),
    ):
        assert chunks_enqueue(broadcast_id=backlog.pk) == CHUNKS
        _wait_for(lambda: backlog.chunks.filter(status=ChunkStatus.SUCCEEDED).exists(), timeout=60, what="a chunk")
        with celery_process("beat", "--schedule", str(tmp_path / "beat-schedule"), "--loglevel", "INFO", **common):
            started = time.monotonic()
            _wait_for(
                lambda: BroadcastChunk.objects.filter(pk=lost_chunk.pk).exclude(status=ChunkStatus.RUNNING).exists(),
                timeout=SWEEP_BOUND_SECONDS,
                what=f"a sweep (log: {log})",
            )
            swept_after = time.monotonic() - started
        pending = backlog.chunks.filter(status=ChunkStatus.PENDING).count()
    # The sweep ran while most of the backlog still waited in the queue.
    assert pending > CHUNKS // 2, pending
    assert swept_after < SWEEP_BOUND_SECONDS


def _wait_for(condition, *, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"no {what} within {timeout}s")
