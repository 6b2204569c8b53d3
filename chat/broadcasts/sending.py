"""Broadcasting images as messages to every chat: recorded as chunks, run by workers or in-process.

broadcast_send is the one entry point for a new send (the admin action, any API). It records the
broadcast and its chunks in one transaction, then either runs the chunks here (small sends, or
no broker) or hands them to Celery workers, one task per chunk. broadcast_resume restarts what
a crash or an outage left; chat/broadcasts/sweeper.py does the same on a schedule.
"""

import functools
import time
import uuid
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import Now

from chat.broadcasts.chunks import (
    ChunkFailed,
    broadcast_close_if_done,
    chunk_plan,
    chunk_run,
    lease_expired,
)
from chat.broadcasts.queue import BrokerUnavailable, chunks_enqueue
from chat.broadcasts.slots import slot_limits
from chat.models import (
    UNFINISHED_BROADCAST_STATUSES,
    Broadcast,
    BroadcastStatus,
    Chat,
    ChunkStatus,
    Image,
    ImageStatus,
)
from core.database import TRANSIENT_DATABASE_ERRORS
from core.observability import JOB_OP_PREFIX, sentry_job

logger = structlog.get_logger(__name__)

BROADCAST_OP = f"{JOB_OP_PREFIX}broadcast"
# On workers a broadcast is one transaction per chunk (about BROADCAST_CHUNK_MESSAGES messages).
BROADCAST_CHUNK_OP = f"{JOB_OP_PREFIX}broadcast_chunk"


class BroadcastError(Exception):
    """A broadcast could not be started or finished."""


class NoImagesSelected(BroadcastError):
    """None of the given ids names an image with a stored copy."""


@dataclass
class SendOutcome:
    """What broadcast_send did: ran the broadcast, queued it, or recorded it for the sweeper (broker down)."""

    broadcast: Broadcast
    queued: bool = False
    broker_unavailable: bool = False


def broadcast_create(*, image_ids: Iterable[int], sent_by=None, chunk_messages: int | None = None) -> Broadcast:
    """Record a queued broadcast of the selected images that have a stored copy, with its chunks."""
    wanted = {int(image_id) for image_id in image_ids}
    existing = dict(Image.objects.filter(pk__in=wanted).values_list("pk", "status"))
    stored = sorted(pk for pk, status in existing.items() if status == ImageStatus.STORED)
    if not stored:
        if existing:
            raise NoImagesSelected(
                f"None of the {len(existing)} selected images has a stored copy (failed or still pending): nothing was sent."
            )
        raise NoImagesSelected("No existing image was selected.")
    with transaction.atomic():
        broadcast = Broadcast.objects.create(
            sent_by=sent_by, image_count=len(stored), unsent_image_count=len(existing) - len(stored)
        )
        broadcast.images.set(stored)
        broadcast.chunk_count = chunk_plan(broadcast=broadcast, image_count=len(stored), chunk_messages=chunk_messages)
        Broadcast.objects.filter(pk=broadcast.pk).update(chunk_count=broadcast.chunk_count)
    if not broadcast.chunk_count:  # no chat at all: nothing to run
        broadcast_close_if_done(broadcast_id=broadcast.pk)
        broadcast.refresh_from_db()
    return broadcast


def broadcast_send(*, image_ids: Iterable[int], sent_by=None) -> SendOutcome:
    """Send each stored image as a message to every chat, skipping pairs that already have one.

    Now, in this process, or queued for the Celery workers when it is too large for a web request.
    """
    broadcast = broadcast_create(image_ids=image_ids, sent_by=sent_by)
    if broadcast.status not in UNFINISHED_BROADCAST_STATUSES:
        return SendOutcome(broadcast=broadcast)
    expected_messages = broadcast.image_count * Chat.objects.count()
    threshold = settings.BROADCAST_QUEUE_FROM_MESSAGES
    if not (settings.CELERY_BROKER_URL and threshold and expected_messages >= threshold):
        return SendOutcome(broadcast=broadcast_run(broadcast=broadcast))

    outcome = SendOutcome(broadcast=broadcast, queued=True)

    def enqueue():
        try:
            chunks_enqueue(broadcast_id=broadcast.pk)
        except BrokerUnavailable as error:
            # Recorded and left queued: the sweeper (or resume_broadcasts) sends it once the broker is back.
            outcome.broker_unavailable = True
            logger.warning("broadcast.enqueue_failed", broadcast_id=broadcast.pk, error=str(error))
            return
        logger.info("broadcast.queued", broadcast_id=broadcast.pk, expected_messages=expected_messages)

    # The workers must find the committed rows; outside a transaction this runs at once.
    transaction.on_commit(enqueue)
    return outcome


def _as_sentry_transaction(run):
    """Each in-process run is a Sentry transaction named "broadcast" with the counts as data (a no-op without Sentry)."""

    @functools.wraps(run)
    def traced(*, broadcast: Broadcast, **options) -> Broadcast:
        with sentry_job(name="broadcast", op=BROADCAST_OP) as job:
            job.set_tag("broadcast_id", str(broadcast.pk))
            try:
                return run(broadcast=broadcast, **options)
            finally:
                for key, value in {
                    "broadcast_id": broadcast.pk,
                    "staff_user_id": broadcast.sent_by_id,
                    "status": broadcast.status,
                    "images": broadcast.image_count,
                    "chunks": broadcast.chunk_count,
                    "chats": broadcast.chat_count,
                    "created": broadcast.created_count,
                    "skipped": broadcast.skipped_count,
                    "ms": broadcast.duration_ms,
                }.items():
                    job.set_data(key, value)

    return traced


@_as_sentry_transaction
def broadcast_run(*, broadcast: Broadcast, workers: int | None = None) -> Broadcast:
    """Run the broadcast's unfinished chunks in this process, in order, on `workers` connections.

    Raises BroadcastError when it ends failed, or when a database outage outlasts the retries
    (the rest stay pending for resume_broadcasts, or for the sweeper when there is a broker).
    """
    # More connections than concurrency slots would only wait for them (chat/broadcasts/slots.py).
    workers = min([workers or settings.BROADCAST_WORKERS, *(bound for bound in slot_limits() if bound)])
    owner = f"in-process:{uuid.uuid4().hex}"
    chunk_ids = list(
        broadcast.chunks.filter(status__in=[ChunkStatus.PENDING, ChunkStatus.RUNNING])
        .order_by("after_chat_id")
        .values_list("pk", flat=True)
    )
    first_failure = interruption = None
    try:
        for failure in _run_chunks(chunk_ids, owner=owner, workers=workers):
            first_failure = first_failure or failure
    except TRANSIENT_DATABASE_ERRORS as error:
        interruption = error
        _interrupted(broadcast, error, owner=owner)

    def close():
        broadcast.refresh_from_db()
        if broadcast.status in UNFINISHED_BROADCAST_STATUSES and interruption is None:
            broadcast_close_if_done(broadcast_id=broadcast.pk, cause=first_failure.__cause__ if first_failure else None)
            broadcast.refresh_from_db()

    try:
        _with_reconnects(close)
    except TRANSIENT_DATABASE_ERRORS as error:
        raise BroadcastError(
            f"Broadcast #{broadcast.pk} was interrupted: the database is unavailable ({error})."
        ) from error
    if broadcast.status == BroadcastStatus.FAILED:
        # From the chunk's error: the event broadcast.failed reported is not reported again.
        raise BroadcastError(
            f"Broadcast #{broadcast.pk} failed after {broadcast.created_count} messages: {broadcast.error}"
        ) from (first_failure or interruption)
    if broadcast.status != BroadcastStatus.SUCCEEDED:
        reason = (
            f"interrupted ({interruption!r}); the workers finish it" if interruption else "another runner holds chunks"
        )
        raise BroadcastError(f"Broadcast #{broadcast.pk} is not finished: {reason}.") from interruption
    return broadcast


def _with_reconnects(work, *, attempts: int = 3):
    """work(), again on a new connection after a transient database error (a restart, a killed backend)."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except TRANSIENT_DATABASE_ERRORS:
            if attempt == attempts or connection.in_atomic_block:
                raise
            connection.close_if_unusable_or_obsolete()
            time.sleep(0.5 * attempt)


def _run_chunks(chunk_ids: list[int], *, owner: str, workers: int):
    """Run each chunk, on this connection or, when free to, on `workers` connections in parallel.

    Yields each chunk's ChunkFailed, or None.
    """
    # Inside a caller's transaction other connections cannot see its rows: stay on it.
    if workers <= 1 or connection.in_atomic_block:
        for chunk_id in chunk_ids:
            yield _run_chunk_to_the_end(chunk_id, owner)
        return
    # A chunk's insert is CPU-bound on the database: one backend per core divides the wall time
    # (within the concurrency slots). At most 2 × workers chunks are in flight.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="broadcast") as pool:
        in_flight: deque[Future[ChunkFailed | None]] = deque()
        for chunk_id in chunk_ids:
            in_flight.append(pool.submit(_run_chunk_on_own_connection, chunk_id, owner))
            if len(in_flight) >= 2 * workers:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()


def _run_chunk_on_own_connection(chunk_id: int, owner: str) -> ChunkFailed | None:
    try:
        return _run_chunk_to_the_end(chunk_id, owner)
    finally:
        connection.close()


def _run_chunk_to_the_end(chunk_id: int, owner: str) -> ChunkFailed | None:
    """Run one chunk, retrying transient database errors with backoff, waiting out another runner's lease.

    Waits for a concurrency slot as long as it takes (other sends, or workers, hold them).
    """
    delay = 0.5
    attempt = 0
    while attempt < settings.BROADCAST_CHUNK_MAX_ATTEMPTS:
        attempt += 1
        try:
            result = chunk_run(chunk_id=chunk_id, owner=owner, close=False)
        except ChunkFailed as failure:
            return failure  # recorded on the chunk; the other chunks go on and the broadcast closes failed
        except TRANSIENT_DATABASE_ERRORS:
            if attempt == settings.BROADCAST_CHUNK_MAX_ATTEMPTS or connection.in_atomic_block:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
            connection.close_if_unusable_or_obsolete()
            continue
        if result.outcome == "throttled":
            attempt -= 1  # not an attempt: the chunk was not claimed
            continue
        if result.outcome != "leased":
            return None
        # Another runner holds it: it finishes it, or its lease runs out and this run takes over.
        time.sleep(min(result.lease_seconds_left + 0.1, settings.BROADCAST_CHUNK_LEASE_SECONDS))
    # Out of attempts, each time behind another runner's live lease: that runner finishes it, or the sweeper.
    return None


def _interrupted(broadcast: Broadcast, error: Exception, *, owner: str) -> None:
    """The database went away for longer than the retries: say so, unless workers will carry on.

    Never raises a database error: it runs while the database may still be down, and its caller
    (an admin action, a command) must answer with a message.
    """
    logger.warning("broadcast.interrupted", broadcast_id=broadcast.pk, error=repr(error))
    connection.close_if_unusable_or_obsolete()
    if settings.CELERY_BROKER_URL:
        try:
            chunks_enqueue(broadcast_id=broadcast.pk)
        except (BrokerUnavailable, *TRANSIENT_DATABASE_ERRORS):
            pass  # still down: the sweeper re-queues a broadcast without progress
        return
    reason = f"Interrupted: {error!r}. Run `manage.py resume_broadcasts --id {broadcast.pk}` to finish it."
    try:
        with transaction.atomic():
            # As resume and close: under the broadcast's row lock, so none of them sees half of this.
            Broadcast.objects.select_for_update().filter(pk=broadcast.pk).values_list("pk", flat=True).first()
            # No runner is left for these (this run's own threads have all returned): failed, for resume to
            # make pending again. A chunk another runner holds under a live lease is left to it.
            broadcast.chunks.filter(
                Q(status=ChunkStatus.PENDING) | lease_expired() | Q(status=ChunkStatus.RUNNING, lease_owner=owner)
            ).update(status=ChunkStatus.FAILED, leased_until=None, finished_at=Now(), last_error=reason)
        # Closes it failed (logged once) unless another runner still holds a chunk, which then closes it.
        broadcast_close_if_done(broadcast_id=broadcast.pk, cause=error)
    except TRANSIENT_DATABASE_ERRORS:
        return  # still down: the row says running, no live lease, until someone resumes it


def broadcast_resume(*, broadcast: Broadcast) -> SendOutcome:
    """Finish a failed or stalled broadcast: its failed chunks and expired leases run again.

    With a broker, the chunks are queued for the workers; without one they run here.
    """
    with transaction.atomic():
        broadcast = Broadcast.objects.select_for_update().get(pk=broadcast.pk)
        if broadcast.status == BroadcastStatus.SUCCEEDED:
            return SendOutcome(broadcast=broadcast)
        broadcast.chunks.filter(Q(status=ChunkStatus.FAILED) | lease_expired()).update(
            status=ChunkStatus.PENDING, attempts=0, leased_until=None, finished_at=None
        )
        if broadcast.status == BroadcastStatus.FAILED:
            Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.RUNNING, error="", finished_at=None)
            logger.info("broadcast.resumed", broadcast_id=broadcast.pk)
    # All chunks done but never closed (its last runner died in between): close it now.
    broadcast_close_if_done(broadcast_id=broadcast.pk)
    broadcast.refresh_from_db()
    if broadcast.status == BroadcastStatus.SUCCEEDED:
        return SendOutcome(broadcast=broadcast)
    if not settings.CELERY_BROKER_URL:
        try:
            return SendOutcome(broadcast=broadcast_run(broadcast=broadcast))
        except BroadcastError as error:
            try:
                broadcast.refresh_from_db()
            except TRANSIENT_DATABASE_ERRORS:
                raise error from None  # it says the database is unavailable; the row says what committed
            return SendOutcome(broadcast=broadcast)
    try:
        chunks_enqueue(broadcast_id=broadcast.pk)
    except BrokerUnavailable:
        return SendOutcome(broadcast=broadcast, queued=True, broker_unavailable=True)
    return SendOutcome(broadcast=broadcast, queued=True)


def broadcasts_unfinished():
    """Broadcasts a resume can finish: queued, running or failed."""
    return Broadcast.objects.exclude(status=BroadcastStatus.SUCCEEDED).order_by("pk")
