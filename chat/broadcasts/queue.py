"""Handing a broadcast's pending chunks to the Celery workers: one task per chunk."""

from celery import current_app
from django.db.models.functions import Now
from kombu.exceptions import OperationalError as KombuOperationalError

from chat.models import BroadcastChunk, ChunkStatus

# The chunk task's registered name (chat.broadcasts.tasks): queued by name, never by importing the task.
BROADCAST_CHUNK_TASK = "chat.tasks.broadcast_chunk_task"


class BrokerUnavailable(Exception):
    """The broker could not take the chunks; they stay pending for the sweeper or resume_broadcasts."""


def chunks_enqueue(*, broadcast_id: int) -> int:
    """Publish a task for every pending chunk of the broadcast; returns how many were published.

    A chunk published twice (the sweeper's re-queue racing a slow queue) is harmless: its
    second run finds it done, or leased by the first.
    """
    chunk_ids = list(
        BroadcastChunk.objects.filter(broadcast_id=broadcast_id, status=ChunkStatus.PENDING)
        .order_by("after_chat_id")
        .values_list("pk", flat=True)
    )
    if not chunk_ids:
        return 0
    BroadcastChunk.objects.filter(pk__in=chunk_ids).update(queued_at=Now())
    try:
        # A signature by name: the registered task's own options (and eager mode without a broker) apply.
        chunk_task = current_app.signature(BROADCAST_CHUNK_TASK)
        # One broker connection for the whole fan-out, not one per chunk.
        with current_app.producer_or_acquire() as producer:
            for chunk_id in chunk_ids:
                chunk_task.apply_async((chunk_id,), producer=producer)
    except (KombuOperationalError, OSError) as error:
        raise BrokerUnavailable(f"The broker did not take the broadcast's chunks: {error}") from error
    return len(chunk_ids)
