"""One image download run at a time (fetch_images, its task, "Repair selected"): a PostgreSQL advisory lock."""

from contextlib import contextmanager

import structlog
from django.db import connection

logger = structlog.get_logger(__name__)

# Any constant unique to this lock among the application's advisory locks ("pru fetch").
FETCH_LOCK_KEY = 0x70727566


class FetchAlreadyRunning(Exception):
    """Another run holds the lock; this one did not start."""


@contextmanager
def image_fetch_lock():
    """Hold the fetch lock for the block or raise FetchAlreadyRunning at once (never waits).

    A session-level advisory lock: PostgreSQL releases it when the holder's connection ends,
    so a killed run never leaves a stale lock behind (a lock file or a row would). SQLite,
    the single-user development database, has no such lock and runs unguarded.
    """
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [FETCH_LOCK_KEY])
        acquired = cursor.fetchone()[0]
    if not acquired:
        holder = _holder()
        logger.warning("image_fetch.already_running", holder_pid=holder)
        raise FetchAlreadyRunning(
            f"found a fetch run going (database backend pid {holder}); not starting a second one"
            if holder
            else "found a fetch run going; not starting a second one"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [FETCH_LOCK_KEY])


def _holder() -> int | None:
    # pg_locks shows a bigint key split into classid (high) and objid (low 32 bits).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = %s AND objsubid = 1",
            [FETCH_LOCK_KEY],
        )
        row = cursor.fetchone()
    return row[0] if row else None
