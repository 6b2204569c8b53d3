"""Broadcasting images as messages to every chat: set-based, batched, idempotent."""

import functools
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from chat.models import Broadcast, BroadcastStatus, Chat, Image, Message
from pru_app.sentry_setup import BROADCAST_OP, sentry_job

logger = structlog.get_logger(__name__)


class BroadcastError(Exception):
    """A broadcast could not be started or finished."""


class NoImagesSelected(BroadcastError):
    """None of the given ids names an existing image."""


def broadcast_create(*, image_ids: Iterable[int], sent_by=None) -> Broadcast:
    """Record a queued broadcast of the existing images among image_ids."""
    wanted = {int(image_id) for image_id in image_ids}
    existing = sorted(Image.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    if not existing:
        raise NoImagesSelected("No existing image was selected.")
    with transaction.atomic():
        broadcast = Broadcast.objects.create(sent_by=sent_by, image_count=len(existing))
        broadcast.images.set(existing)
    return broadcast


def _as_sentry_transaction(run):
    """Each run is a Sentry transaction named "broadcast" with the counts as data (a no-op without Sentry)."""

    @functools.wraps(run)
    def traced(*, broadcast: Broadcast, **options) -> Broadcast:
        with sentry_job(name="broadcast", op=BROADCAST_OP) as job:
            job.set_tag("broadcast_id", str(broadcast.pk))
            try:
                return run(broadcast=broadcast, **options)
            finally:
                # _finish puts the counts on the instance whether the run succeeded or failed.
                for key, value in {
                    "broadcast_id": broadcast.pk,
                    "staff_user_id": broadcast.sent_by_id,
                    "status": broadcast.status,
                    "images": broadcast.image_count,
                    "chats": broadcast.chat_count,
                    "created": broadcast.created_count,
                    "skipped": broadcast.skipped_count,
                    "ms": broadcast.duration_ms,
                }.items():
                    job.set_data(key, value)

    return traced


@_as_sentry_transaction
def broadcast_run(*, broadcast: Broadcast, batch_size: int | None = None, workers: int | None = None) -> Broadcast:
    """Create the missing messages of a recorded broadcast, one committed batch of chats at a time."""
    batch_size = batch_size or settings.BROADCAST_CHAT_BATCH_SIZE
    workers = workers or settings.BROADCAST_WORKERS
    image_ids = list(broadcast.images.order_by("pk").values_list("pk", flat=True))
    log = logger.bind(broadcast_id=broadcast.pk, staff_user_id=broadcast.sent_by_id)
    log.info("broadcast.started", images=len(image_ids))
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.RUNNING)

    started = time.monotonic()
    chats = created = 0
    try:
        for batch, batch_created in _insert_batches(image_ids=image_ids, batch_size=batch_size, workers=workers):
            chats += batch.chats
            created += batch_created
    except Exception as error:
        _finish(broadcast, started, chats, created, len(image_ids), status=BroadcastStatus.FAILED, error=repr(error))
        log.exception("broadcast.failed", chats=chats, created=created)
        raise BroadcastError(f"Broadcast #{broadcast.pk} failed after {created} messages: {error}") from error

    _finish(broadcast, started, chats, created, len(image_ids), status=BroadcastStatus.SUCCEEDED)
    log.info(
        "broadcast.finished",
        images=len(image_ids),
        chats=broadcast.chat_count,
        created=broadcast.created_count,
        skipped=broadcast.skipped_count,
        ms=broadcast.duration_ms,
    )
    return broadcast


def broadcast_send(*, image_ids: Iterable[int], sent_by=None) -> Broadcast:
    """Send each image as a message to every chat, skipping pairs that already have one.

    Now, or queued for a Celery worker when it is too large for a web request.
    """
    broadcast = broadcast_create(image_ids=image_ids, sent_by=sent_by)
    threshold = settings.BROADCAST_QUEUE_FROM_MESSAGES
    if not (settings.CELERY_BROKER_URL and threshold):
        return broadcast_run(broadcast=broadcast)
    expected_messages = broadcast.image_count * Chat.objects.count()
    if expected_messages < threshold:
        return broadcast_run(broadcast=broadcast)

    from chat.tasks import broadcast_run_task

    # The worker must find the committed broadcast row.
    transaction.on_commit(lambda: broadcast_run_task.delay(broadcast.pk))
    logger.info("broadcast.queued", broadcast_id=broadcast.pk, expected_messages=expected_messages)
    return broadcast


def _finish(broadcast, started, chats, created, images, *, status, error=""):
    broadcast.chat_count = chats
    broadcast.created_count = created
    # Pairs that were already there, whether from an earlier or a concurrent send.
    broadcast.skipped_count = max(chats * images - created, 0)
    broadcast.status = status
    broadcast.error = error
    broadcast.finished_at = timezone.now()
    broadcast.duration_ms = int((time.monotonic() - started) * 1000)
    broadcast.save(
        update_fields=["chat_count", "created_count", "skipped_count", "status", "error", "finished_at", "duration_ms"]
    )


@dataclass(frozen=True)
class ChatBatch:
    """The chats with after_chat_id < id <= up_to_chat_id."""

    after_chat_id: int
    up_to_chat_id: int
    chats: int


def _chat_batches(*, size: int) -> Iterator[ChatBatch]:
    chat_table = connection.ops.quote_name(Chat._meta.db_table)
    after_chat_id = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT MAX(id), COUNT(*) FROM (SELECT id FROM {chat_table} WHERE id > %s ORDER BY id LIMIT %s) AS batch",
                [after_chat_id, size],
            )
            up_to_chat_id, chats = cursor.fetchone()
        if not chats:
            return
        yield ChatBatch(after_chat_id=after_chat_id, up_to_chat_id=up_to_chat_id, chats=chats)
        after_chat_id = up_to_chat_id


def _insert_batch(image_ids: list[int], batch: ChatBatch) -> int:
    # One transaction per batch keeps lock time flat; a re-run fills what a crash left.
    with transaction.atomic():
        return _insert_missing_messages(
            image_ids=image_ids, after_chat_id=batch.after_chat_id, up_to_chat_id=batch.up_to_chat_id
        )


def _insert_batches(*, image_ids: list[int], batch_size: int, workers: int) -> Iterator[tuple[ChatBatch, int]]:
    """Insert every batch, on this connection or, when free to, on `workers` connections in parallel."""
    batches = _chat_batches(size=batch_size)
    # Inside a caller's transaction other connections cannot see its rows: stay on it.
    if workers <= 1 or connection.in_atomic_block:
        for batch in batches:
            yield batch, _insert_batch(image_ids, batch)
        return
    # The foreign-key checks PostgreSQL runs per row are CPU-bound: one backend per core
    # divides the wall time. At most 2 × workers batches are in flight, so memory stays flat.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="broadcast") as pool:
        in_flight = deque()
        for batch in batches:
            in_flight.append((batch, pool.submit(_insert_batch_on_own_connection, image_ids, batch)))
            if len(in_flight) >= 2 * workers:
                done_batch, future = in_flight.popleft()
                yield done_batch, future.result()
        while in_flight:
            done_batch, future = in_flight.popleft()
            yield done_batch, future.result()


def _insert_batch_on_own_connection(image_ids: list[int], batch: ChatBatch) -> int:
    try:
        return _insert_batch(image_ids, batch)
    finally:
        connection.close()


def _insert_missing_messages(*, image_ids: list[int], after_chat_id: int, up_to_chat_id: int) -> int:
    """One INSERT … SELECT for a range of chats; pairs that already have a message are left alone."""
    try:
        # Savepoint: an anti-join insert is cheaper than ON CONFLICT's speculative insertion...
        with transaction.atomic():
            return _insert_pairs(image_ids, after_chat_id, up_to_chat_id, on_conflict="")
    except IntegrityError:
        # ...but a concurrent send may commit the same pairs first; the unique constraint says so.
        return _insert_pairs(
            image_ids, after_chat_id, up_to_chat_id, on_conflict="ON CONFLICT (chat_id, image_id) DO NOTHING"
        )


def _insert_pairs(image_ids, after_chat_id, up_to_chat_id, *, on_conflict: str) -> int:
    quote = connection.ops.quote_name
    message_table = quote(Message._meta.db_table)
    chat_table = quote(Chat._meta.db_table)
    image_table = quote(Image._meta.db_table)
    image_placeholders = ", ".join(["%s"] * len(image_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {message_table} (chat_id, image_id, text)
            SELECT c.id, i.id, COALESCE(NULLIF(i.description, ''), i.title)
            FROM {chat_table} AS c CROSS JOIN {image_table} AS i
            WHERE c.id > %s AND c.id <= %s AND i.id IN ({image_placeholders})
              AND NOT EXISTS (SELECT 1 FROM {message_table} AS m WHERE m.chat_id = c.id AND m.image_id = i.id)
            ORDER BY c.id, i.id
            {on_conflict}
            """,
            [after_chat_id, up_to_chat_id, *image_ids],
        )
        return cursor.rowcount
