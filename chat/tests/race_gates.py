"""Deterministic interleavings on real PostgreSQL: a trigger that holds a statement until the test opens its gate.

A gate is an advisory lock the test holds on a connection of its own. A trigger on the gated
table (with a WHEN condition picking the rows) takes the same lock in shared mode, so the
statement that fires it waits, inside its transaction, until the test releases the lock. The
test sees the wait in pg_stat_activity, so it knows exactly where the other actor stands: no
sleep-and-hope. Threads started with in_thread() get their own Django connection.
"""

import contextlib
import itertools
import threading
import time

import psycopg2
from django.db import connection

_keys = itertools.count(7_160_000)


def raw_connection():
    """A psycopg2 connection to the test database outside Django's (autocommit)."""
    settings = connection.settings_dict
    raw = psycopg2.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
    )
    raw.autocommit = True
    return raw


class Gate:
    def __init__(self, *, key: int, holder, trigger: str, table: str):
        self.key, self.holder, self.trigger, self.table = key, holder, trigger, table
        self.open = False

    def wait_until_held(self, *, count: int = 1, timeout: float = 30) -> None:
        """Until `count` backends wait at this gate."""
        wait_for_lock_waits(count=count, timeout=timeout, advisory_key=self.key)

    def release(self) -> None:
        if not self.open:
            with self.holder.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [self.key])
            self.open = True


@contextlib.contextmanager
def gate(*, table: str, when: str, event: str = "INSERT", timing: str = "AFTER"):
    """Hold every `event` on `table` whose row matches `when` (SQL on NEW/OLD) until the gate is released."""
    key = next(_keys)
    name = f"race_gate_{key}"
    holder = raw_connection()
    with holder.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [key])
        cursor.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_advisory_xact_lock_shared({key}); RETURN NULL; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER {name} {timing} {event} ON {table} FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION {name}()"
        )
        # Fires in a chunk's insert too, which runs with session_replication_role = replica
        # (chat/broadcasts/inserts.py) and so skips ordinary triggers.
        cursor.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")
    opened = Gate(key=key, holder=holder, trigger=name, table=table)
    try:
        yield opened
    finally:
        opened.release()
        with holder.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            cursor.execute(f"DROP FUNCTION IF EXISTS {name}()")
        holder.close()


def wait_for_lock_waits(*, count: int = 1, timeout: float = 30, advisory_key: int | None = None) -> None:
    """Until `count` backends of this database wait for a lock (an advisory gate, or any row/transaction lock)."""
    watcher = raw_connection()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with watcher.cursor() as cursor:
                if advisory_key is None:
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND wait_event <> 'advisory'"
                    )
                else:
                    cursor.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                        "AND ((classid::bigint << 32) | objid::bigint) = %s",
                        [advisory_key],
                    )
                if cursor.fetchone()[0] >= count:
                    return
            time.sleep(0.01)
        raise AssertionError(f"no {count} backend(s) waiting for a lock after {timeout}s")
    finally:
        watcher.close()


class InThread:
    """A function run in a thread with its own database connection; result() re-raises its error."""

    def __init__(self, function):
        self.outcome: list = []
        self.thread = threading.Thread(target=self._run, args=(function,))
        self.thread.start()

    def _run(self, function):
        try:
            self.outcome.append(("ok", function()))
        except BaseException as error:  # handed to the test by result()
            self.outcome.append(("error", error))
        finally:
            connection.close()

    def result(self, timeout: float = 60):
        self.thread.join(timeout=timeout)
        assert not self.thread.is_alive(), "the thread did not finish"
        kind, value = self.outcome[0]
        if kind == "error":
            raise value
        return value


def in_thread(function) -> InThread:
    return InThread(function)
