"""Fault drills: real PostgreSQL, real Redis, real `celery worker` and `celery beat` processes, no mocks.

Every drill ends with exactly chats × images messages, no duplicate (the unique constraint would
refuse one, and the count says none is missing) and the broadcast `succeeded`, within a bound.
A statement trigger with pg_sleep makes each chunk's insert last a quarter of a second, so a
fault lands while a chunk is running, whatever the machine's speed.
"""

import contextlib
import os
import signal
import subprocess
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.db.models.functions import Now
from django.urls import reverse

from chat.broadcasts.queue import chunks_enqueue
from chat.broadcasts.sending import broadcast_create
from chat.models import Broadcast, BroadcastChunk, BroadcastStatus, Chat, ChunkStatus, Message
from chat.tests.celery_worker import (
    celery_process,
    new_queue_name,
    publishing_to,
    wait_until_broadcast_finished,
    worker_arguments,
)
from devservers.s3 import free_port

pytestmark = pytest.mark.django_db(transaction=True)

CHATS, IMAGES, CHUNK_MESSAGES = 120, 5, 50  # 600 messages in 12 chunks of 10 chats
CHUNK_SECONDS = 0.25
# Short leases and a fast sweeper, so that recovery happens within seconds.
DRILL_SETTINGS = {
    "BROADCAST_CHUNK_LEASE_SECONDS": "3",
    "BROADCAST_SWEEP_SECONDS": "1",
    "BROADCAST_STALL_SECONDS": "3",
    # Room for every drill's runners at once: the drills race them on purpose (slots.py is tested apart).
    "BROADCAST_MAX_CONCURRENT_CHUNKS": "4",
    "BROADCAST_MAX_CONCURRENT_CHUNKS_PER_BROADCAST": "4",
}


@pytest.fixture
def redis_server(tmp_path):
    """A Redis of the drill's own on a free loopback port, which a drill may stop and start again."""
    server = RedisServer(port=free_port(), directory=tmp_path)
    server.start()
    yield server
    server.stop()


class RedisServer:
    def __init__(self, *, port: int, directory):
        self.port, self.directory, self.process = port, directory, None
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self):
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(lambda: _answers(self.port), timeout=10, what="redis-server to listen")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def send(make_image, settings):
    """Chats, stored images, slow chunk inserts; returns a function recording a broadcast of them."""
    settings.BROADCAST_CHUNK_MESSAGES = CHUNK_MESSAGES
    user_model = get_user_model()
    users = user_model.objects.bulk_create(user_model(username=f"drill{number}") for number in range(CHATS))
    Chat.objects.bulk_create(Chat(user=user) for user in users)
    images = [make_image() for _ in range(IMAGES)]
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION drill_slow_insert() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_sleep({CHUNK_SECONDS}); RETURN NULL; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER drill_slow_insert BEFORE INSERT ON chat_message "
            "FOR EACH STATEMENT EXECUTE FUNCTION drill_slow_insert()"
        )
        # Broadcasts insert with session_replication_role = replica (chat/broadcasts/inserts.py),
        # which skips ordinary triggers: this one fires in every mode.
        cursor.execute("ALTER TABLE chat_message ENABLE ALWAYS TRIGGER drill_slow_insert")
    send = lambda: broadcast_create(image_ids=[image.pk for image in images])  # noqa: E731
    send.image_ids = [image.pk for image in images]
    yield send
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS drill_slow_insert ON chat_message")
        cursor.execute("DROP FUNCTION IF EXISTS drill_slow_insert()")


@pytest.fixture
def drill(redis_server, tmp_path):
    """The broker, the queue and a log file shared by the drill's workers, beat and this process."""
    queue = new_queue_name()
    with publishing_to(broker_url=redis_server.url, queue=queue):
        yield Drill(redis_server=redis_server, queue=queue, log=tmp_path / "celery.log")


class Drill:
    def __init__(self, *, redis_server, queue, log):
        self.redis_server, self.queue, self.log = redis_server, queue, log

    def worker(self, *, pool="solo", concurrency=1, name=None, **env):
        return celery_process(
            *worker_arguments(queue=self.queue, pool=pool, concurrency=concurrency, name=name),
            broker_url=self.redis_server.url,
            queue=self.queue,
            output_path=self.log,
            env_overrides={**DRILL_SETTINGS, **env},
        )

    def beat(self, tmp_path):
        return celery_process(
            "beat",
            "--schedule",
            str(tmp_path / "beat-schedule"),
            "--loglevel",
            "INFO",
            broker_url=self.redis_server.url,
            queue=self.queue,
            output_path=self.log,
            env_overrides=DRILL_SETTINGS,
        )


def _assert_complete(broadcast, *, timeout=60):
    finished = wait_until_broadcast_finished(broadcast, timeout=timeout)
    assert finished.status == BroadcastStatus.SUCCEEDED, finished.error
    assert Message.objects.count() == CHATS * IMAGES
    assert (finished.chat_count, finished.created_count, finished.skipped_count) == (CHATS, CHATS * IMAGES, 0)
    assert set(finished.chunks.values_list("status", flat=True)) == {ChunkStatus.SUCCEEDED}
    return finished


def _a_running_chunk(broadcast, *, after_done=1, timeout=30) -> BroadcastChunk:
    """Wait for a chunk that is running while at least after_done chunks are done: mid-send."""

    def running():
        if broadcast.chunks.filter(status=ChunkStatus.SUCCEEDED).count() < after_done:
            return None
        return broadcast.chunks.filter(status=ChunkStatus.RUNNING).first()

    return _wait_for(running, timeout=timeout, what="a running chunk", interval=0.02)


def test_a_killed_pool_child_redelivers_its_chunk_and_the_send_finishes_with_no_one_acting(send, drill):
    with drill.worker(pool="prefork", concurrency=1):
        broadcast = send()
        chunks_enqueue(broadcast_id=broadcast.pk)
        victim = _a_running_chunk(broadcast)
        pool_child_pid = int(victim.worker.rsplit(":", 1)[1])
        os.kill(pool_child_pid, signal.SIGKILL)
        # No sweeper runs here: only reject_on_worker_lost's redelivery can finish the chunk.
        _assert_complete(broadcast, timeout=30)
    victim.refresh_from_db()
    assert victim.attempts == 2 and victim.lease_owner  # the same task took its chunk back


def test_a_killed_worker_is_replaced_and_the_sweeper_finishes_its_chunks(send, drill, tmp_path):
    broadcast = send()
    with drill.worker() as first_worker:
        chunks_enqueue(broadcast_id=broadcast.pk)
        _a_running_chunk(broadcast, after_done=2)
        os.killpg(first_worker.pid, signal.SIGKILL)  # the whole worker, with the message it held
        first_worker.wait(timeout=10)
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.RUNNING and Message.objects.count() < CHATS * IMAGES
    with drill.worker(), drill.beat(tmp_path):
        _assert_complete(broadcast, timeout=45)


def test_a_killed_worker_is_finished_by_resume_broadcasts_without_a_sweeper(send, drill, settings):
    settings.BROADCAST_CHUNK_LEASE_SECONDS = 3
    broadcast = send()
    with drill.worker() as worker:
        chunks_enqueue(broadcast_id=broadcast.pk)
        _a_running_chunk(broadcast, after_done=2)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    time.sleep(3.2)  # the dead worker's lease runs out
    # The queue still holds the chunks that were never started; resume queues the lost one again.
    settings.CELERY_BROKER_URL = drill.redis_server.url
    call_command("resume_broadcasts", "--id", str(broadcast.pk))
    with drill.worker():
        _assert_complete(broadcast, timeout=45)


def test_terminated_database_backends_mid_send_are_retried_and_the_send_finishes(send, drill):
    with drill.worker(name="drill-a@%h"), drill.worker(name="drill-b@%h"):
        broadcast = send()
        chunks_enqueue(broadcast_id=broadcast.pk)
        _a_running_chunk(broadcast)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            (terminated,) = cursor.fetchone()
        assert terminated >= 1
        _assert_complete(broadcast, timeout=45)
    assert BroadcastChunk.objects.filter(broadcast=broadcast, attempts__gte=2).exists()


def test_two_workers_share_one_send_and_their_records_say_so(send, drill):
    with drill.worker(name="drill-a@%h") as first, drill.worker(name="drill-b@%h") as second:
        broadcast = send()
        chunks_enqueue(broadcast_id=broadcast.pk)
        finished = _assert_complete(broadcast)
    workers = set(finished.chunks.values_list("worker", flat=True))
    assert {int(worker.rsplit(":", 1)[1]) for worker in workers} == {first.pid, second.pid}


def test_one_chunk_delivered_to_two_workers_at_once_creates_and_counts_its_messages_once(make_user, make_image, drill):
    users = [make_user() for _ in range(3)]
    image = make_image()
    broadcast = broadcast_create(image_ids=[image.pk])
    [chunk] = broadcast.chunks.all()
    with drill.worker(name="drill-a@%h"), drill.worker(name="drill-b@%h"):
        from chat.tasks import broadcast_chunk_task

        broadcast_chunk_task.delay(chunk.pk)
        broadcast_chunk_task.delay(chunk.pk)
        finished = wait_until_broadcast_finished(broadcast, timeout=30)
        # The second delivery finds the chunk leased or done, and creates nothing.
        time.sleep(1)
    chunk.refresh_from_db()
    assert finished.status == BroadcastStatus.SUCCEEDED
    assert (finished.created_count, chunk.created_count, Message.objects.count()) == (
        len(users),
        len(users),
        len(users),
    )


def test_broker_down_when_staff_press_go_is_no_500_and_it_completes_once_the_broker_is_back(
    send, drill, client, settings, tmp_path
):
    settings.CELERY_BROKER_URL = drill.redis_server.url
    settings.BROADCAST_QUEUE_FROM_MESSAGES = 1
    staff = get_user_model().objects.create_superuser("drill-staff", password="pw-for-tests-only")
    Chat.objects.get_or_create(user=staff)
    client.force_login(staff)
    expected_chats = Chat.objects.count()
    drill.redis_server.stop()

    response = client.post(
        reverse("admin:chat_image_changelist"),
        {"action": "send_to_all_chats", "_selected_action": send.image_ids},
        follow=True,
    )
    assert response.status_code == 200
    broadcast = Broadcast.objects.get()
    assert "queued for retry: the task broker is unavailable" in response.content.decode()
    assert broadcast.status == BroadcastStatus.QUEUED and not Message.objects.exists()

    drill.redis_server.start()
    with drill.worker(), drill.beat(tmp_path):
        finished = wait_until_broadcast_finished(broadcast, timeout=45)
    assert finished.status == BroadcastStatus.SUCCEEDED, finished.error
    assert Message.objects.count() == expected_chats * IMAGES


def _answers(port) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def _wait_for(predicate, *, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _terminate_other_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def _in_background(function):
    """Run function(), a send, in a thread with its own connection; returns (thread, outcome list)."""
    import threading

    outcome = []

    def run():
        try:
            outcome.append(function())
        except Exception as error:  # the test asserts on it
            outcome.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_an_in_process_send_whose_database_connections_are_killed_retries_and_finishes(send, settings):
    from chat.broadcasts.sending import broadcast_run

    settings.CELERY_BROKER_URL = ""
    broadcast = send()
    thread, outcome = _in_background(lambda: broadcast_run(broadcast=broadcast))
    _a_running_chunk(broadcast)
    assert _terminate_other_backends() >= 1
    thread.join(timeout=60)
    assert not isinstance(outcome[0], Exception), outcome
    _assert_complete(broadcast, timeout=5)


def test_an_in_process_send_that_loses_its_database_for_good_stops_and_resume_finishes_it(send, settings):
    from chat.broadcasts.sending import BroadcastError, broadcast_run

    settings.CELERY_BROKER_URL = ""
    settings.BROADCAST_CHUNK_MAX_ATTEMPTS = 3  # retries after 0.5 s and 1 s, then it gives up
    settings.BROADCAST_CHUNK_LEASE_SECONDS = 2
    broadcast = send()
    thread, outcome = _in_background(lambda: broadcast_run(broadcast=broadcast))
    _a_running_chunk(broadcast)
    with _connections_refused(connection.settings_dict["NAME"]):
        _terminate_other_backends()
        thread.join(timeout=60)
    assert isinstance(outcome[0], BroadcastError), outcome
    broadcast.refresh_from_db()
    # It could not even record the failure: it says running, and no runner holds a live lease for long.
    assert broadcast.status == BroadcastStatus.RUNNING and Message.objects.count() < CHATS * IMAGES

    call_command("resume_broadcasts", "--id", str(broadcast.pk))
    _assert_complete(broadcast, timeout=5)


@contextlib.contextmanager
def _connections_refused(database: str):
    """New connections to the database are refused inside the block (as while a server is down)."""
    import psycopg2

    settings = connection.settings_dict
    admin = psycopg2.connect(
        dbname="postgres", user=settings["USER"], host=settings["HOST"] or "127.0.0.1", port=settings["PORT"] or 5432
    )
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        yield
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        admin.close()


# --- No admin action answers 500 during an outage (issue 16, finding 8) -------------------------
#
# The database goes down in the middle of each action: a gate (chat/tests/race_gates.py) holds the
# action's first write until the test has refused new connections and terminated the action's
# backend, so the outage lands inside the action, after the request was authenticated.

ADMIN_ACTIONS = {
    # action: (changelist, what the gate holds)
    "send_to_all_chats": ("admin:chat_image_changelist", ("chat_message", "INSERT")),
    "resume": ("admin:chat_broadcast_changelist", ("chat_message", "INSERT")),
    "verify_selected": ("admin:chat_image_changelist", ("chat_image", "UPDATE")),
    "repair_selected": ("admin:chat_image_changelist", ("chat_image", "UPDATE")),
}


def _staff_client():
    from django.test import Client

    staff = get_user_model().objects.create_superuser("drill-staff", password="pw-for-tests-only")
    Chat.objects.get_or_create(user=staff)
    client = Client(raise_request_exception=False)
    client.force_login(staff)
    return client


def _failed_broadcast(send) -> Broadcast:
    """A recorded broadcast whose every chunk failed: what staff resume."""
    broadcast = send()
    broadcast.chunks.update(status=ChunkStatus.FAILED, last_error="RuntimeError('boom')")
    Broadcast.objects.filter(pk=broadcast.pk).update(
        status=BroadcastStatus.FAILED, error="RuntimeError('boom')", finished_at=Now()
    )
    return broadcast


def _selection(action, send, request) -> list[int]:
    if action == "resume":
        return [_failed_broadcast(send).pk]
    if action in ("verify_selected", "repair_selected"):
        # A storage that answers (moto's S3): the images' objects are missing, which the actions record.
        request.getfixturevalue("s3_storage")
    return list(send.image_ids)


@pytest.mark.parametrize("action", list(ADMIN_ACTIONS))
def test_each_admin_action_answers_a_message_not_500_when_the_database_goes_down_mid_action(
    action, send, drill, settings, request
):
    from chat.tests.race_gates import gate, in_thread

    changelist, (table, event) = ADMIN_ACTIONS[action]
    # With a broker, as the finding: the in-process send's interruption handling queues the chunks.
    settings.CELERY_BROKER_URL = drill.redis_server.url if action == "send_to_all_chats" else ""
    settings.BROADCAST_QUEUE_FROM_MESSAGES = 10**9  # in-process, in the request
    settings.BROADCAST_WORKERS = 1
    settings.BROADCAST_CHUNK_MAX_ATTEMPTS = 2
    client = _staff_client()
    selected = _selection(action, send, request)
    main_backend = _backend_pid()
    with gate(table=table, event=event, when="true") as held:
        request = in_thread(lambda: client.post(reverse(changelist), {"action": action, "_selected_action": selected}))
        held.wait_until_held()
        with _connections_refused(connection.settings_dict["NAME"]):
            _terminate_backends_except(held.holder, main_backend)
            response = request.result(timeout=90)
    assert response.status_code == 302, response.content.decode()[-2000:]
    shown = client.get(reverse(changelist)).content.decode()
    assert "unavailable" in shown, shown[-3000:]


@pytest.mark.parametrize("action", ["resume", "verify_selected", "repair_selected"])
def test_each_admin_action_answers_a_message_not_500_with_the_broker_down(action, send, drill, settings, request):
    """Sending with the broker down: test_broker_down_when_staff_press_go_is_no_500_…"""
    settings.CELERY_BROKER_URL = drill.redis_server.url
    changelist, _held = ADMIN_ACTIONS[action]
    client = _staff_client()
    selected = _selection(action, send, request)
    drill.redis_server.stop()
    response = client.post(reverse(changelist), {"action": action, "_selected_action": selected}, follow=True)
    assert response.status_code == 200
    assert response.context["messages"] and all(message.message for message in response.context["messages"])
    if action == "resume":
        assert "the broker is unavailable" in response.content.decode()
        # Its chunks are pending again and the broadcast unfinished: the sweeper sends them once the broker is back.
        assert Broadcast.objects.get().status == BroadcastStatus.RUNNING
        assert set(BroadcastChunk.objects.values_list("status", flat=True)) == {ChunkStatus.PENDING}


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _terminate_backends_except(raw, *kept_pids: int) -> None:
    """Every backend of the test database but raw's own and kept_pids: the action loses its connection."""
    with raw.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND NOT (pid = ANY(%s))",
            [list(kept_pids)],
        )
