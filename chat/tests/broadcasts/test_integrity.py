"""Referential integrity checked once per chunk: the privileged path, the fallback, and a drill that deletes mid-send.

Real PostgreSQL, real roles, real concurrent connections. A trigger that waits on an advisory
lock the test holds (a gate) keeps a chunk's transaction open, after its locks are taken and
before its rows are written, for exactly as long as the test wants: no sleep-and-hope.
"""

import threading
import time
import uuid

import pytest
import structlog
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction

from chat.broadcasts import inserts
from chat.broadcasts.sending import broadcast_create, broadcast_run
from chat.models import BroadcastStatus, Chat, Image, Message

pytestmark = pytest.mark.django_db(transaction=True)

GATE = 7_418_001


def _execute(sql, params=None, *, using=None):
    with (using or connection).cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


@pytest.fixture
def row_trigger_counter():
    """An ordinary (ENABLE) row trigger on chat_message that counts the rows it saw.

    PostgreSQL's foreign-key checks are ordinary row triggers too: with session_replication_role
    = replica both are skipped, without it both fire. So this counter says which path a send took.
    """
    _execute("CREATE TABLE broadcast_row_trigger_count (n int NOT NULL)")
    _execute("INSERT INTO broadcast_row_trigger_count VALUES (0)")
    _execute(
        "CREATE FUNCTION broadcast_count_row() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN UPDATE broadcast_row_trigger_count SET n = n + 1; RETURN NEW; END $$"
    )
    _execute(
        "CREATE TRIGGER broadcast_count_row AFTER INSERT ON chat_message "
        "FOR EACH ROW EXECUTE FUNCTION broadcast_count_row()"
    )
    yield lambda: _execute("SELECT n FROM broadcast_row_trigger_count")[0][0]
    _execute("DROP TRIGGER IF EXISTS broadcast_count_row ON chat_message")
    _execute("DROP FUNCTION IF EXISTS broadcast_count_row()")
    _execute("DROP TABLE IF EXISTS broadcast_row_trigger_count")


@pytest.fixture
def fresh_privilege_check():
    """Each test asks the database again whether its role may skip the per-row checks."""
    inserts._REPLICA_ALLOWED.clear()  # the module's per-process cache (private), reset between tests
    yield
    inserts._REPLICA_ALLOWED.clear()


@pytest.fixture
def app_role(fresh_privilege_check):
    """A non-superuser role with only the table privileges the app needs; `as_role()` runs the block as it."""
    name = f"pru_broadcast_{uuid.uuid4().hex[:10]}"
    _execute(f"CREATE ROLE {name} LOGIN NOSUPERUSER")
    _execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}")
    _execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {name}")
    superuser = connection.settings_dict["USER"]

    class Role:
        def __init__(self):
            self.name = name

        def grant_replication_role(self):
            _execute(f"GRANT SET ON PARAMETER session_replication_role TO {name}")

        def __enter__(self):
            connection.close()
            connection.settings_dict["USER"] = name
            return self

        def __exit__(self, *exc):
            connection.close()
            connection.settings_dict["USER"] = superuser

    yield Role()
    connection.close()
    connection.settings_dict["USER"] = superuser
    _execute(f"REVOKE SET ON PARAMETER session_replication_role FROM {name}")
    _execute(f"DROP OWNED BY {name}")
    _execute(f"DROP ROLE {name}")


def _orphans() -> tuple[int, int]:
    """Messages whose chat is gone, and messages whose image is gone (a NULL image is no orphan)."""
    (row,) = _execute(
        """
        SELECT
            (SELECT COUNT(*) FROM chat_message AS m WHERE NOT EXISTS (SELECT 1 FROM chat_chat AS c WHERE c.id = m.chat_id)),
            (SELECT COUNT(*) FROM chat_message AS m
             WHERE m.image_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM chat_image AS i WHERE i.id = m.image_id))
        """
    )
    return row


def _send(images, **options):
    return broadcast_run(broadcast=broadcast_create(image_ids=[image.pk for image in images], **options), workers=1)


def test_a_privileged_role_inserts_without_per_row_checks(
    make_user, make_image, row_trigger_counter, fresh_privilege_check
):
    for _ in range(5):
        make_user()
    images = [make_image() for _ in range(2)]
    broadcast = _send(images, chunk_messages=4)
    assert (broadcast.status, broadcast.created_count, Message.objects.count()) == (BroadcastStatus.SUCCEEDED, 10, 10)
    assert row_trigger_counter() == 0  # no row trigger fired, so no per-row foreign-key check either
    assert _orphans() == (0, 0)
    # The mode lasted for the insert only: the role is back to origin in every later statement.
    assert _execute("SHOW session_replication_role") == [("origin",)]


def test_a_role_granted_set_on_session_replication_role_takes_the_fast_path(
    make_user, make_image, row_trigger_counter, app_role
):
    for _ in range(3):
        make_user()
    image = make_image()
    app_role.grant_replication_role()
    with app_role:
        assert _execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [(False,)]
        broadcast = _send([image])
    assert broadcast.created_count == 3
    assert row_trigger_counter() == 0


def test_a_role_without_the_privilege_falls_back_to_row_checks_and_says_so_once(
    make_user, make_image, row_trigger_counter, app_role
):
    for _ in range(3):
        make_user()
    first, second = make_image(), make_image()
    with structlog.testing.capture_logs() as lines, app_role:
        assert _send([first]).created_count == 3
        assert _send([second]).created_count == 3
    assert row_trigger_counter() == 6  # every row went through the row triggers, the foreign-key checks among them
    fallbacks = [line for line in lines if line["event"] == "broadcast.row_checks"]
    assert len(fallbacks) == 1 and fallbacks[0]["role"] == app_role.name
    assert "GRANT SET ON PARAMETER session_replication_role" in fallbacks[0]["detail"]
    assert _orphans() == (0, 0)


def test_chats_and_an_image_deleted_while_a_send_runs_leave_no_message_pointing_at_a_missing_row(make_user, make_image):
    """The drill: deletions before a chunk's lock are not sent to; deletions after it wait for its commit."""
    chats = [make_user().chat for _ in range(8)]
    images = [make_image() for _ in range(3)]
    broadcast = broadcast_create(image_ids=[image.pk for image in images], chunk_messages=12)  # 2 chunks of 4 chats
    assert broadcast.chunk_count == 2
    deleted_before_its_chunk = [chat.pk for chat in chats[6:]]  # of chunk 2, deleted while chunk 1 runs
    deleted_during_its_chunk = [chat.pk for chat in chats[:2]]  # of chunk 1, deleted while it runs
    deleted_image = images[1].pk

    # The gate: every chunk's insert waits (after its locks, before its rows) until the test opens it.
    gate = connections.create_connection(DEFAULT_DB_ALIAS)
    _execute("SELECT pg_advisory_lock(%s)", [GATE], using=gate)
    _execute(
        "CREATE FUNCTION drill_gate() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN PERFORM pg_advisory_xact_lock_shared({GATE}); RETURN NULL; END $$"
    )
    _execute("CREATE TRIGGER drill_gate BEFORE INSERT ON chat_message FOR EACH STATEMENT EXECUTE FUNCTION drill_gate()")
    # Fires under session_replication_role = replica too.
    _execute("ALTER TABLE chat_message ENABLE ALWAYS TRIGGER drill_gate")

    outcome: dict = {}
    deleter_started, early_deleted, first_try_done = threading.Event(), threading.Event(), threading.Event()

    def send():
        try:
            outcome["broadcast"] = broadcast_run(broadcast=broadcast, workers=1)
        except Exception as error:  # surfaced by the assertions below
            outcome["send_error"] = error
        finally:
            connection.close()

    def delete():
        try:
            outcome["deleter_pid"] = _execute("SELECT pg_backend_pid()")[0][0]
            deleter_started.set()
            Chat.objects.filter(pk__in=deleted_before_its_chunk).delete()
            early_deleted.set()
            for attempt in range(1, 6):
                try:
                    with transaction.atomic():
                        Chat.objects.filter(pk__in=deleted_during_its_chunk).delete()
                        Image.objects.filter(pk=deleted_image).delete()
                    outcome["deleted_at_attempt"] = attempt
                    return
                except IntegrityError:
                    # A chunk committed messages for them meanwhile: delete again, those messages with them.
                    continue
                finally:
                    first_try_done.set()
        except Exception as error:  # surfaced by the assertions below
            outcome["delete_error"] = error
        finally:
            connection.close()

    sender = threading.Thread(target=send)
    deleter = threading.Thread(target=delete)
    try:
        sender.start()
        _wait_for(lambda: _waiting_on_advisory_lock() >= 1, "chunk 1 to hold its locks and wait at the gate")
        deleter.start()
        assert deleter_started.wait(10) and early_deleted.wait(10)
        # The deletion of chunk 1's chats and of the image either waits for chunk 1's row locks
        # (the guarantee) or, without them, commits at once.
        _wait_for(
            lambda: first_try_done.is_set() or _waits_on_a_row(outcome["deleter_pid"]),
            "the deleter to block or to finish its first try",
        )
        blocked = not first_try_done.is_set()
    finally:
        _execute("SELECT pg_advisory_unlock(%s)", [GATE], using=gate)
        gate.close()
        sender.join(timeout=60)
        deleter.join(timeout=60)
        _execute("DROP TRIGGER IF EXISTS drill_gate ON chat_message")
        _execute("DROP FUNCTION IF EXISTS drill_gate()")

    assert "send_error" not in outcome and "delete_error" not in outcome, outcome
    assert blocked, "the chunk's FOR KEY SHARE locks must hold the deletion until the chunk commits"
    assert _orphans() == (0, 0)
    # The deletions went through in the end (a retry after the chunks committed).
    assert not Chat.objects.filter(pk__in=deleted_before_its_chunk + deleted_during_its_chunk).exists()
    assert not Image.objects.filter(pk=deleted_image).exists()
    finished = outcome["broadcast"]
    assert finished.status == BroadcastStatus.SUCCEEDED
    # Chunk 1 locked its 4 chats; chunk 2 found 2 of its 4 already gone and did not count them.
    assert finished.chat_count == 6
    # Every message the send counted exists, except those deleted with chunk 1's two chats after it committed.
    assert finished.created_count == Message.objects.count() + len(deleted_during_its_chunk) * len(images)
    # Nothing was there before, so nothing was skipped: each chunk created a message per chat and image it locked.
    assert finished.skipped_count == 0


def _waiting_on_advisory_lock() -> int:
    return _execute(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory'"
    )[0][0]


def _waits_on_a_row(pid: int) -> bool:
    return bool(
        _execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock' AND wait_event <> 'advisory'",
            [pid],
        )
    )


def _wait_for(condition, what: str, *, timeout: float = 20.0) -> None:
    """Polls a state of the database (not a guess at how long something takes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
