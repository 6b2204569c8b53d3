"""How many broadcast chunks insert at once: a bounded number of slots, in total and per broadcast.

A chunk's insert is CPU on the database server. Unbounded, every worker process (and every
in-process runner) would run one, and the site's own queries would wait behind them. A slot is
a PostgreSQL advisory lock held by the runner's connection for the length of the chunk: the
bound holds across every worker and host, and a runner that dies releases its slot with its
connection. Settings: BROADCAST_MAX_CONCURRENT_CHUNKS (in total) and
BROADCAST_MAX_CONCURRENT_CHUNKS_PER_BROADCAST; 0 means unbounded.
"""

import contextlib
import time
from collections.abc import Iterator

from django.conf import settings
from django.db import OperationalError, connection, transaction

from core.database import TRANSIENT_DATABASE_ERRORS

# Advisory-lock namespaces (the first of the two int4 keys): "brd\x01" and "brd\x02".
TOTAL_NAMESPACE = 0x62726401
PER_BROADCAST_NAMESPACE = 0x62726402
# Slots per broadcast are numbered broadcast_id * PER_BROADCAST_STRIDE + n (wrapping at 2**31).
PER_BROADCAST_STRIDE = 64
LOCK_NOT_AVAILABLE = "55P03"


def slot_limits() -> tuple[int, int]:
    """(in total, per broadcast); 0 is no bound."""
    total = max(settings.BROADCAST_MAX_CONCURRENT_CHUNKS, 0)
    per_broadcast = max(settings.BROADCAST_MAX_CONCURRENT_CHUNKS_PER_BROADCAST, 0)
    if total and per_broadcast:
        per_broadcast = min(per_broadcast, total)
    return total, min(per_broadcast, PER_BROADCAST_STRIDE) if per_broadcast else 0


@contextlib.contextmanager
def chunk_slot(*, broadcast_id: int, wait_seconds: float) -> Iterator[bool]:
    """Hold a slot for one chunk of broadcast_id; yields False when none was free within wait_seconds."""
    total, per_broadcast = slot_limits()
    if connection.vendor != "postgresql" or not (total or per_broadcast):
        yield True
        return
    deadline = time.monotonic() + wait_seconds
    held: list[tuple[int, int]] = []
    try:
        held, full = _try_slots(broadcast_id, total, per_broadcast)
        while not held and time.monotonic() < deadline:
            # Queue for a slot of the bound that is full (PostgreSQL grants a lock to its waiters in
            # order, the moment it is released: no gap between one chunk's commit and the next
            # one's start), then try for both again.
            _wait_for_a_slot(full, seconds=deadline - time.monotonic())
            held, full = _try_slots(broadcast_id, total, per_broadcast)
        yield bool(held)
    finally:
        _release(held)


def _wait_for_a_slot(full: tuple[int, int, int], *, seconds: float) -> None:
    """Block until a slot of the full bound is free, or seconds pass; hold nothing after."""
    namespace, first, count = full
    slot = first + (time.monotonic_ns() // 1000) % count  # any one of them: each is freed within a chunk
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
            [f"{max(int(seconds * 1000), 1)}ms"],
        )
        previous = cursor.fetchone()[0]
        try:
            with transaction.atomic():
                cursor.execute("SELECT pg_advisory_lock(%s, %s)", [namespace, slot])
        except OperationalError as error:
            if getattr(error.__cause__, "pgcode", None) != LOCK_NOT_AVAILABLE:
                raise
        else:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [namespace, slot])
        # Inside a caller's transaction the setting would otherwise outlive this block.
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])


def _namespaces(broadcast_id: int, total: int, per_broadcast: int) -> list[tuple[int, int, int]]:
    return [
        (TOTAL_NAMESPACE, 0, total),
        (PER_BROADCAST_NAMESPACE, (broadcast_id * PER_BROADCAST_STRIDE) % 2**31, per_broadcast),
    ]


def _try_slots(broadcast_id: int, total: int, per_broadcast: int):
    """Both slots, or none: a free one of the total and a free one of the broadcast's; and the bound that was full."""
    held: list[tuple[int, int]] = []
    for namespace, first, count in _namespaces(broadcast_id, total, per_broadcast):
        if not count:
            continue
        with connection.cursor() as cursor:
            # The first free slot (generate_series is scanned in order; LIMIT stops at the first lock taken).
            cursor.execute(
                "SELECT slot FROM generate_series(%s, %s) AS slot WHERE pg_try_advisory_lock(%s, slot) LIMIT 1",
                [first, first + count - 1, namespace],
            )
            row = cursor.fetchone()
        if row is None:
            _release(held)
            return [], (namespace, first, count)
        held.append((namespace, row[0]))
    return held, None


def _release(held: list[tuple[int, int]]) -> None:
    if not held:
        return
    try:
        with connection.cursor() as cursor:
            for namespace, slot in held:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [namespace, slot])
    except TRANSIENT_DATABASE_ERRORS:
        # A lost connection has released its session's locks; one that lives on must not keep them.
        connection.close()
    held.clear()
