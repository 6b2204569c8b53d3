"""The bound on broadcast work: advisory-lock slots in total and per broadcast, honoured by every runner."""

import threading
import time

import pytest
from django.db import connection

from chat.broadcasts.chunks import chunk_run
from chat.broadcasts.queue import chunks_enqueue
from chat.broadcasts.sending import broadcast_create, broadcast_run
from chat.broadcasts.slots import chunk_slot
from chat.models import BroadcastStatus, ChunkStatus, Message
from chat.tests.celery_worker import running_celery_worker, wait_until_broadcast_finished

BROKER_URL = "redis://127.0.0.1:6379/15"

pytestmark = pytest.mark.django_db(transaction=True)


def _execute(sql, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


class SlotHolder:
    """Another runner, on its own connection, holding a slot of broadcast_id until told to let go."""

    def __init__(self, broadcast_id):
        self.broadcast_id = broadcast_id
        self.holding, self.release = threading.Event(), threading.Event()
        self.got = None
        self.thread = threading.Thread(target=self._hold)

    def _hold(self):
        try:
            with chunk_slot(broadcast_id=self.broadcast_id, wait_seconds=0) as got:
                self.got = got
                self.holding.set()
                self.release.wait(30)
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        assert self.holding.wait(10)
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.thread.join(10)


@pytest.fixture
def two_sends(make_user, make_image):
    for _ in range(4):
        make_user()
    images = [make_image(), make_image()]
    return [broadcast_create(image_ids=[image.pk]) for image in images]


def test_no_chunk_runs_while_every_slot_is_held_and_it_runs_once_one_is_free(two_sends, settings):
    settings.BROADCAST_MAX_CONCURRENT_CHUNKS = 1
    first, second = two_sends
    [chunk] = second.chunks.all()
    with SlotHolder(first.pk) as other:
        assert other.got
        assert chunk_run(chunk_id=chunk.pk, owner="t", slot_wait_seconds=0).outcome == "throttled"
        chunk.refresh_from_db()
        assert (chunk.status, chunk.attempts) == (ChunkStatus.PENDING, 0)  # not claimed, no attempt spent
    assert chunk_run(chunk_id=chunk.pk, owner="t", slot_wait_seconds=0).outcome == "ran"
    assert Message.objects.count() == 4


def test_the_per_broadcast_bound_leaves_room_for_another_send(two_sends, settings):
    settings.BROADCAST_MAX_CONCURRENT_CHUNKS = 2
    settings.BROADCAST_MAX_CONCURRENT_CHUNKS_PER_BROADCAST = 1
    first, second = two_sends
    [first_chunk] = first.chunks.all()
    [second_chunk] = second.chunks.all()
    with SlotHolder(first.pk):
        # The same send's second chunk waits; another send takes the total's second slot.
        assert chunk_run(chunk_id=first_chunk.pk, owner="t", slot_wait_seconds=0).outcome == "throttled"
        assert chunk_run(chunk_id=second_chunk.pk, owner="t", slot_wait_seconds=0).outcome == "ran"


def test_a_slot_waited_for_is_taken_when_its_holder_lets_go(two_sends, settings):
    settings.BROADCAST_MAX_CONCURRENT_CHUNKS = 1
    first, second = two_sends
    [chunk] = second.chunks.all()
    with SlotHolder(first.pk) as other:
        # Let go as soon as this runner is seen polling (its connection asks for the slot again and again).
        threading.Timer(0.3, other.release.set).start()
        assert chunk_run(chunk_id=chunk.pk, owner="t", slot_wait_seconds=20).outcome == "ran"


def test_an_in_process_send_on_many_connections_never_inserts_more_chunks_at_once_than_the_bound(
    make_user, make_image, settings
):
    settings.BROADCAST_MAX_CONCURRENT_CHUNKS = 2
    settings.BROADCAST_MAX_CONCURRENT_CHUNKS_PER_BROADCAST = 2
    for _ in range(12):
        make_user()
    image = make_image()
    # Each chunk's insert records how many chunk inserts are running at that moment, then lingers.
    _execute("CREATE TABLE drill_concurrent (n int NOT NULL)")
    _execute(
        "CREATE FUNCTION drill_concurrent() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "INSERT INTO drill_concurrent SELECT COUNT(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND state = 'active' AND query LIKE '%%WITH chats AS MATERIALIZED%%'; "
        "PERFORM pg_sleep(0.2); RETURN NULL; END $$"
    )
    _execute(
        "CREATE TRIGGER drill_concurrent BEFORE INSERT ON chat_message FOR EACH STATEMENT EXECUTE FUNCTION drill_concurrent()"
    )
    _execute("ALTER TABLE chat_message ENABLE ALWAYS TRIGGER drill_concurrent")
    try:
        broadcast = broadcast_run(broadcast=broadcast_create(image_ids=[image.pk], chunk_messages=2), workers=6)
        seen = [row[0] for row in _execute("SELECT n FROM drill_concurrent")]
    finally:
        _execute("DROP TRIGGER IF EXISTS drill_concurrent ON chat_message")
        _execute("DROP FUNCTION IF EXISTS drill_concurrent()")
        _execute("DROP TABLE IF EXISTS drill_concurrent")
    assert broadcast.status == BroadcastStatus.SUCCEEDED and broadcast.created_count == 12
    assert len(seen) == 6 and max(seen) <= 2


def test_a_worker_gives_back_a_chunk_while_every_slot_is_held_and_runs_it_once_one_is_free(
    two_sends, settings, tmp_path
):
    """A real worker, on the chunks' own queue: a throttled task is retried (not failed) and finishes after."""
    settings.CELERY_BROKER_URL = BROKER_URL
    settings.BROADCAST_MAX_CONCURRENT_CHUNKS = 1
    first, second = two_sends
    [chunk] = second.chunks.all()
    worker_settings = {"BROADCAST_MAX_CONCURRENT_CHUNKS": "1", "BROADCAST_SLOT_WAIT_SECONDS": "0.2"}
    with (
        running_celery_worker(
            broker_url=BROKER_URL, output_path=tmp_path / "worker.log", env_overrides=worker_settings
        ),
        SlotHolder(first.pk) as other,
    ):
        chunks_enqueue(broadcast_id=second.pk)
        # The worker tries, finds no slot, and retries: the chunk is given back untouched each time.
        _wait_until(lambda: "throttled" in _worker_log(tmp_path) or "Retry in" in _worker_log(tmp_path))
        chunk.refresh_from_db()
        assert (chunk.status, chunk.attempts) == (ChunkStatus.PENDING, 0)
        other.release.set()
        finished = wait_until_broadcast_finished(second, timeout=30)
    assert finished.status == BroadcastStatus.SUCCEEDED and finished.created_count == 4


def _worker_log(tmp_path) -> str:
    return (tmp_path / "worker.log").read_text(errors="replace")


def _wait_until(condition, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
