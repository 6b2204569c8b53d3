"""A broadcast's chunks: planned with it, claimed under a lease, committed once, closed by the last one.

Every runner (a Celery worker, the in-process runner, resume_broadcasts) goes through chunk_run.
A chunk's messages and its "succeeded" commit in one transaction, and only the holder of the
chunk's latest claim can commit it: a chunk run twice, even at the same moment, creates its
messages once and counts them once.
"""

import dataclasses
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    Subquery,
    Sum,
    TextField,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, Now

from chat.broadcasts.inserts import insert_missing_messages
from chat.broadcasts.slots import chunk_slot
from chat.models import (
    UNFINISHED_BROADCAST_STATUSES,
    Broadcast,
    BroadcastChunk,
    BroadcastStatus,
    Chat,
    ChunkStatus,
    Message,
)
from core.database import TRANSIENT_DATABASE_ERRORS

logger = structlog.get_logger(__name__)


def worker_name() -> str:
    """Host and process: read at each claim, since a prefork pool forks its children after import."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lease_expired() -> Q:
    """A chunk that says running whose lease ran out on the database's clock: its runner is gone."""
    return Q(status=ChunkStatus.RUNNING, leased_until__lt=Now())


class ChunkFailed(Exception):
    """A chunk hit an error no retry can get past; it is recorded as failed."""


@dataclass(frozen=True)
class ChunkRun:
    """What one call of chunk_run did."""

    chunk_id: int
    # ran: this call committed the chunk; finished: it was done before (or by a run that
    # took over this call's claim); leased: another runner holds a live lease;
    # not_runnable: its broadcast is finished (failed and not resumed), or it is out of attempts;
    # throttled: no concurrency slot was free (slots.py), the chunk was not claimed: try again later.
    outcome: str
    created: int = 0
    lease_seconds_left: float = 0.0
    closed: Broadcast | None = None
    broadcast_id: int | None = None


def chunk_plan(*, broadcast: Broadcast, image_count: int, chunk_messages: int | None = None) -> int:
    """Record the broadcast's chunks: ranges of today's chats of about chunk_messages messages each."""
    chunk_messages = chunk_messages or settings.BROADCAST_CHUNK_MESSAGES
    chats_per_chunk = max(1, chunk_messages // max(image_count, 1))
    chunks = []
    after_chat_id = planned_before = 0
    for up_to_chat_id, planned_through in _chunk_upper_bounds(chats_per_chunk):
        chunks.append(
            BroadcastChunk(
                broadcast=broadcast,
                after_chat_id=after_chat_id,
                up_to_chat_id=up_to_chat_id,
                chat_count=planned_through - planned_before,
            )
        )
        after_chat_id, planned_before = up_to_chat_id, planned_through
    BroadcastChunk.objects.bulk_create(chunks, batch_size=1000)
    return len(chunks)


def _chunk_upper_bounds(chats_per_chunk: int) -> list[tuple[int, int]]:
    """(last chat id, chats up to it) every chats_per_chunk chats and at the last chat: one scan of the pk index."""
    chat_table = connection.ops.quote_name(Chat._meta.db_table)
    with connection.cursor() as cursor:
        # A table name from the model, quoted; values are parameters.
        cursor.execute(
            f"""
            SELECT id, n FROM (
                SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n, COUNT(*) OVER () AS total FROM {chat_table}
            ) AS numbered
            WHERE n %% %s = 0 OR n = total
            ORDER BY id
            """,  # noqa: S608
            [chats_per_chunk],
        )
        return cursor.fetchall()


def chunk_run(*, chunk_id: int, owner: str, close: bool = True, slot_wait_seconds: float | None = None) -> ChunkRun:
    """Claim the chunk for owner and create its messages; close the broadcast when it was the last.

    The chunk runs in one of the bounded concurrency slots (chat/broadcasts/slots.py), waited
    for up to slot_wait_seconds (default BROADCAST_SLOT_WAIT_SECONDS); without one it is left
    unclaimed and the outcome is "throttled".

    close=False leaves the closing to the caller (the in-process runner closes once, at its end,
    with the first chunk's error as the cause).

    owner names the run (a Celery task id survives the task's retries and redeliveries, so a
    redelivered task takes its own chunk back without waiting for the lease to run out).
    Transient database errors propagate after the claim is released; any other error marks
    the chunk failed and raises ChunkFailed.
    """
    if slot_wait_seconds is None:
        slot_wait_seconds = settings.BROADCAST_SLOT_WAIT_SECONDS
    broadcast_id = BroadcastChunk.objects.filter(pk=chunk_id).values_list("broadcast_id", flat=True).first()
    if broadcast_id is None:
        return ChunkRun(chunk_id=chunk_id, outcome="not_runnable")
    with chunk_slot(broadcast_id=broadcast_id, wait_seconds=slot_wait_seconds) as slot:
        if not slot:
            return ChunkRun(chunk_id=chunk_id, outcome="throttled")
        run = _run_claimed(chunk_id=chunk_id, owner=owner, close=close)
    # The slot bounds the inserts: it is handed on the moment the chunk has committed, and the
    # next chunk's insert starts while this runner closes the broadcast (when it was the last).
    if close and run.outcome == "ran" and run.broadcast_id is not None:
        return dataclasses.replace(run, closed=broadcast_close_if_done(broadcast_id=run.broadcast_id))
    return run


def _run_claimed(*, chunk_id: int, owner: str, close: bool) -> ChunkRun:
    claim = _claim(chunk_id=chunk_id, owner=owner)
    if isinstance(claim, ChunkRun):
        return claim
    chunk, token = claim
    log = logger.bind(broadcast_id=chunk.broadcast_id, chunk_id=chunk.pk)
    started = time.monotonic()
    try:
        created = _insert_and_commit(chunk, token)
    except ClaimTakenOver:
        log.info("broadcast.chunk_taken_over", attempt=chunk.attempts)
        return ChunkRun(chunk_id=chunk.pk, outcome="finished")
    except TRANSIENT_DATABASE_ERRORS as error:
        _release(chunk, token, error)
        log.warning("broadcast.chunk_retry", attempt=chunk.attempts, error=repr(error))
        raise
    except Exception as error:
        _record_failure(chunk, token, error)
        log.warning("broadcast.chunk_failed", attempt=chunk.attempts, error=repr(error))
        if close:
            broadcast_close_if_done(broadcast_id=chunk.broadcast_id, cause=error)
        raise ChunkFailed(f"Chunk {chunk.pk} of broadcast #{chunk.broadcast_id} failed: {error}") from error
    log.info(
        "broadcast.chunk_finished",
        attempt=chunk.attempts,
        chats=chunk.chat_count,
        created=created,
        skipped=chunk.skipped_count,
        ms=int((time.monotonic() - started) * 1000),
        worker=worker_name(),
    )
    return ChunkRun(chunk_id=chunk.pk, outcome="ran", created=created, broadcast_id=chunk.broadcast_id)


class ClaimTakenOver(Exception):
    """Another run claimed the chunk after this one: this run's inserts are rolled back."""


def _claim(*, chunk_id: int, owner: str):
    """(chunk, claim token) when this run may go ahead; otherwise the ChunkRun that says why not."""
    lease = ExpressionWrapper(
        Now() + Value(timedelta(seconds=settings.BROADCAST_CHUNK_LEASE_SECONDS), output_field=DurationField()),
        output_field=DateTimeField(),
    )
    token = uuid.uuid4()
    claimable = Q(status=ChunkStatus.PENDING) | lease_expired() | Q(status=ChunkStatus.RUNNING, lease_owner=owner)
    # Its broadcast as EXISTS, never as a join: Django turns an UPDATE with a join into
    # "WHERE id IN (SELECT … )", whose conditions PostgreSQL does not re-check on the row it waited
    # for. A claim queued behind a commit's row lock would then take back the chunk that just
    # succeeded (test_races.py). On the chunk row itself, the claimable test is re-checked.
    unfinished_broadcast = Broadcast.objects.filter(
        pk=OuterRef("broadcast_id"), status__in=UNFINISHED_BROADCAST_STATUSES
    )
    claimed = (
        BroadcastChunk.objects.filter(claimable, pk=chunk_id, attempts__lt=settings.BROADCAST_CHUNK_MAX_ATTEMPTS)
        .filter(Exists(unfinished_broadcast))
        .update(
            status=ChunkStatus.RUNNING,
            attempts=F("attempts") + 1,
            lease_owner=owner[:255],
            worker=worker_name(),
            claim_token=token,
            leased_until=lease,
            claimed_at=Now(),
            message_ids_above=_message_ids_handed_out(),
        )
    )
    chunk = BroadcastChunk.objects.select_related("broadcast").get(pk=chunk_id)
    if claimed:
        _mark_broadcast_running(chunk.broadcast)
        return chunk, token
    if chunk.status in (ChunkStatus.SUCCEEDED, ChunkStatus.FAILED):
        return ChunkRun(chunk_id=chunk_id, outcome="finished")
    if chunk.broadcast.status not in UNFINISHED_BROADCAST_STATUSES:
        return ChunkRun(chunk_id=chunk_id, outcome="not_runnable")
    if chunk.attempts >= settings.BROADCAST_CHUNK_MAX_ATTEMPTS and not _lease_is_live(chunk):
        _give_up(chunk)
        return ChunkRun(
            chunk_id=chunk_id, outcome="not_runnable", closed=broadcast_close_if_done(broadcast_id=chunk.broadcast_id)
        )
    return ChunkRun(chunk_id=chunk_id, outcome="leased", lease_seconds_left=_lease_seconds_left(chunk))


def _message_ids_handed_out():
    """The largest message id handed out so far to any connection, committed or not (0: none yet).

    Recorded by the claim, which commits before its run draws a single id (from a fresh block:
    _fresh_message_ids), so every message the run writes has a larger id. Readers rely on it
    (chat/messaging/selectors.py, chat_messages_shown). Any later writer of messages must do the same.
    """
    if connection.vendor == "postgresql":
        # The sequence's own counter: O(1), and counts the blocks other connections cached.
        return RawSQL(
            "COALESCE(pg_sequence_last_value(pg_get_serial_sequence(%s, 'id')::regclass), 0)",
            [Message._meta.db_table],
            output_field=BigIntegerField(),
        )
    # SQLite: one writer at a time and AUTOINCREMENT ids, so the largest id so far is the bound.
    return Coalesce(Subquery(Message.objects.order_by("-pk").values("pk")[:1]), 0)


def _lease_is_live(chunk: BroadcastChunk) -> bool:
    return chunk.status == ChunkStatus.RUNNING and _lease_seconds_left(chunk) > 0


def _lease_seconds_left(chunk: BroadcastChunk) -> float:
    if chunk.leased_until is None:
        return 0.0
    # On the database's clock, which set the lease: the workers' clocks may disagree with it.
    left = (
        BroadcastChunk.objects.filter(pk=chunk.pk)
        .annotate(left=ExpressionWrapper(F("leased_until") - Now(), output_field=DurationField()))
        .values_list("left", flat=True)
        .first()
    )
    return max(left.total_seconds(), 0.0) if left is not None else 0.0


def _mark_broadcast_running(broadcast: Broadcast) -> None:
    if Broadcast.objects.filter(pk=broadcast.pk, status=BroadcastStatus.QUEUED).update(status=BroadcastStatus.RUNNING):
        logger.info(
            "broadcast.started",
            broadcast_id=broadcast.pk,
            staff_user_id=broadcast.sent_by_id,
            images=broadcast.image_count,
            chunks=broadcast.chunk_count,
        )


def _insert_and_commit(chunk: BroadcastChunk, token: uuid.UUID) -> int:
    image_ids = list(chunk.broadcast.images.order_by("pk").values_list("pk", flat=True))
    with transaction.atomic():
        _limit_statement_time()
        _fresh_message_ids()
        # The chats and images it counts are the live ones it locked: one deleted meanwhile is not counted.
        inserted = insert_missing_messages(
            image_ids=image_ids, after_chat_id=chunk.after_chat_id, up_to_chat_id=chunk.up_to_chat_id
        )
        chats, created, skipped = inserted.chats, inserted.created, inserted.skipped
        committed = BroadcastChunk.objects.filter(pk=chunk.pk, status=ChunkStatus.RUNNING, claim_token=token).update(
            status=ChunkStatus.SUCCEEDED,
            chat_count=chats,
            created_count=created,
            skipped_count=skipped,
            leased_until=None,
            finished_at=Now(),
            last_error="",
        )
        if not committed:
            raise ClaimTakenOver()
    chunk.chat_count, chunk.created_count, chunk.skipped_count = chats, created, skipped
    return created


def _limit_statement_time() -> None:
    """No statement of a chunk outlives its lease: past it, another runner may have taken the chunk over."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, true)", [f"{settings.BROADCAST_CHUNK_LEASE_SECONDS}s"]
        )


def _fresh_message_ids() -> None:
    """Message ids above every id handed out before: above the claim's message_ids_above.

    Each connection caches 1,000 ids of the sequence (migration 0002). A long-lived connection
    would otherwise give this run's messages ids from a block it took before the claim, below
    the floor readers rely on (docs/api.md, "Read state"). Runs after the claim committed and
    before the first insert, whatever the insert statement is. Costs one statement and up to
    999 skipped ids a chunk.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("DISCARD SEQUENCES")


def _release(chunk: BroadcastChunk, token: uuid.UUID, error: Exception) -> None:
    """Hand the chunk back (best effort: on a lost connection its lease runs out instead)."""
    try:
        connection.close_if_unusable_or_obsolete()
        BroadcastChunk.objects.filter(pk=chunk.pk, status=ChunkStatus.RUNNING, claim_token=token).update(
            status=ChunkStatus.PENDING, leased_until=None, last_error=repr(error)[:2000]
        )
    except TRANSIENT_DATABASE_ERRORS:
        pass


def _record_failure(chunk: BroadcastChunk, token: uuid.UUID, error: Exception) -> None:
    BroadcastChunk.objects.filter(pk=chunk.pk, status=ChunkStatus.RUNNING, claim_token=token).update(
        status=ChunkStatus.FAILED, leased_until=None, finished_at=Now(), last_error=repr(error)[:2000]
    )


def _give_up(chunk: BroadcastChunk) -> None:
    """Out of attempts: a chunk that keeps losing its runner (or its database) is failed, for staff to resume."""
    gave_up = BroadcastChunk.objects.filter(
        Q(status=ChunkStatus.PENDING) | lease_expired(),
        pk=chunk.pk,
        attempts__gte=settings.BROADCAST_CHUNK_MAX_ATTEMPTS,
    ).update(
        status=ChunkStatus.FAILED,
        leased_until=None,
        finished_at=Now(),
        last_error=Case(
            When(last_error="", then=Value(f"gave up after {chunk.attempts} attempts")),
            default=F("last_error"),
            output_field=TextField(),
        ),
    )
    if gave_up:
        logger.warning(
            "broadcast.chunk_failed",
            broadcast_id=chunk.broadcast_id,
            chunk_id=chunk.pk,
            attempt=chunk.attempts,
            error=f"gave up after {chunk.attempts} attempts",
        )


def broadcast_close_if_done(*, broadcast_id: int, cause: BaseException | None = None) -> Broadcast | None:
    """Finish the broadcast when no chunk is left to run; the caller whose UPDATE changed the row logs it.

    Runs after the caller's chunk has committed: of two last chunks finishing together, the
    one that commits second sees both done. It holds the broadcast's row lock, as a resume does,
    and reads the chunks only once it has it: a resume that made a failed chunk pending commits
    before this reads, or waits until the broadcast is closed and then reopens it.
    """
    with transaction.atomic():
        locked = list(
            Broadcast.objects.select_for_update()
            .filter(pk=broadcast_id, status__in=UNFINISHED_BROADCAST_STATUSES)
            .values_list("pk", flat=True)
        )
        # A new statement: in READ COMMITTED it sees every chunk state committed before the lock was granted.
        closed = bool(locked) and _close_if_no_chunk_left(broadcast_id)
    if not closed:
        return None
    return _log_closed(broadcast_id, cause)


def _close_if_no_chunk_left(broadcast_id: int) -> bool:
    chunks = BroadcastChunk.objects.filter(broadcast=OuterRef("pk")).order_by()
    failed = chunks.filter(status=ChunkStatus.FAILED)
    return bool(
        Broadcast.objects.filter(pk=broadcast_id, status__in=UNFINISHED_BROADCAST_STATUSES)
        .exclude(Exists(chunks.filter(status__in=[ChunkStatus.PENDING, ChunkStatus.RUNNING])))
        .update(
            status=Case(
                When(Exists(failed), then=Value(BroadcastStatus.FAILED)),
                default=Value(BroadcastStatus.SUCCEEDED),
                output_field=CharField(),
            ),
            error=Coalesce(
                Subquery(failed.order_by("after_chat_id").values("last_error")[:1]), Value(""), output_field=TextField()
            ),
            chat_count=_chunk_total(chunks, "chat_count"),
            created_count=_chunk_total(chunks, "created_count"),
            skipped_count=_chunk_total(chunks, "skipped_count"),
            finished_at=Now(),
        )
    )


def _log_closed(broadcast_id: int, cause: BaseException | None) -> Broadcast:
    broadcast = Broadcast.objects.get(pk=broadcast_id)
    fields: dict[str, object] = dict(  # noqa: C408 (reads as the event's keyword fields)
        broadcast_id=broadcast.pk,
        staff_user_id=broadcast.sent_by_id,
        images=broadcast.image_count,
        chunks=broadcast.chunk_count,
        chats=broadcast.chat_count,
        created=broadcast.created_count,
        skipped=broadcast.skipped_count,
        ms=broadcast.duration_ms,
    )
    if broadcast.status == BroadcastStatus.SUCCEEDED:
        logger.info("broadcast.finished", **fields)
    else:
        failed_chunks = broadcast.chunks.filter(status=ChunkStatus.FAILED).count()
        if cause is not None:
            fields["exc_info"] = cause
        logger.error("broadcast.failed", failed_chunks=failed_chunks, error=broadcast.error, **fields)
    return broadcast


def _chunk_total(chunks, field: str):
    return Coalesce(Subquery(chunks.values("broadcast").annotate(total=Sum(field)).values("total")), 0)
