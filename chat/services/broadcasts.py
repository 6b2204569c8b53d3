"""Broadcasting images as messages to every chat: set-based, batched, idempotent."""

import time
from collections.abc import Iterable

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from chat.models import Broadcast, BroadcastStatus, Chat, Image, Message

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


def broadcast_run(*, broadcast: Broadcast, batch_size: int | None = None) -> Broadcast:
    """Create the missing messages of a recorded broadcast, one committed batch of chats at a time."""
    batch_size = batch_size or settings.BROADCAST_CHAT_BATCH_SIZE
    image_ids = list(broadcast.images.order_by("pk").values_list("pk", flat=True))
    log = logger.bind(broadcast_id=broadcast.pk, staff_user_id=broadcast.sent_by_id)
    log.info("broadcast.started", images=len(image_ids))
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.RUNNING)

    started = time.monotonic()
    chats = created = 0
    try:
        last_chat_id = 0
        while True:
            upper_chat_id, batch_chats = _next_chat_batch(after_chat_id=last_chat_id, size=batch_size)
            if batch_chats == 0:
                break
            # One transaction per batch keeps lock time flat; a re-run fills what a crash left.
            with transaction.atomic():
                created += _insert_missing_messages(
                    image_ids=image_ids, after_chat_id=last_chat_id, up_to_chat_id=upper_chat_id
                )
            chats += batch_chats
            last_chat_id = upper_chat_id
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


def broadcast_images_to_all_chats(*, image_ids: Iterable[int], sent_by=None) -> Broadcast:
    """Send each image as a message to every chat, skipping pairs that already have one."""
    broadcast = broadcast_create(image_ids=image_ids, sent_by=sent_by)
    return broadcast_run(broadcast=broadcast)


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


def _next_chat_batch(*, after_chat_id: int, size: int) -> tuple[int, int]:
    """The highest chat id and the number of chats in the next batch after after_chat_id."""
    chat_table = connection.ops.quote_name(Chat._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT MAX(id), COUNT(*) FROM (SELECT id FROM {chat_table} WHERE id > %s ORDER BY id LIMIT %s) AS batch",
            [after_chat_id, size],
        )
        upper_chat_id, count = cursor.fetchone()
    return upper_chat_id or after_chat_id, count


def _insert_missing_messages(*, image_ids: list[int], after_chat_id: int, up_to_chat_id: int) -> int:
    """One INSERT … SELECT for a range of chats; the unique constraint drops existing pairs."""
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
            ON CONFLICT (chat_id, image_id) DO NOTHING
            """,
            [after_chat_id, up_to_chat_id, *image_ids],
        )
        return cursor.rowcount
