"""The broadcasts' Celery tasks: thin wrappers that call a service. Names stay chat.tasks.* (queued messages, beat)."""

import random

from celery import shared_task
from kombu.exceptions import OperationalError as KombuOperationalError

from chat.broadcasts.chunks import ChunkFailed, chunk_run
from chat.broadcasts.queue import BROADCAST_CHUNK_TASK, chunks_enqueue
from chat.broadcasts.sending import BROADCAST_CHUNK_OP
from chat.broadcasts.sweeper import broadcasts_sweep
from core.database import TRANSIENT_DATABASE_ERRORS
from core.observability import sentry_job

RETRIED_ERRORS = (*TRANSIENT_DATABASE_ERRORS, KombuOperationalError)


@shared_task(
    name=BROADCAST_CHUNK_TASK,
    bind=True,
    # Acknowledged after it ran, and given back to the queue when its process dies mid-chunk
    # (acks_late alone acks a task whose worker was lost: it would never run again).
    acks_late=True,
    reject_on_worker_lost=True,
    # A database or broker outage: try again with exponential backoff (1 s, 2 s, … at most 60 s);
    # past the retries the chunk's lease runs out and the sweeper queues it again.
    autoretry_for=RETRIED_ERRORS,
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=10,
)
def broadcast_chunk_task(self, chunk_id: int) -> int:
    """Run one chunk of a broadcast; returns the number of messages this run created."""
    outage = None
    with sentry_job(name="broadcast_chunk", op=BROADCAST_CHUNK_OP) as job:
        job.set_tag("chunk_id", str(chunk_id))
        try:
            result = chunk_run(chunk_id=chunk_id, owner=self.request.id or f"chunk:{chunk_id}")
        except ChunkFailed:
            return 0  # recorded on the chunk (and the broadcast when it was the last): retrying cannot help
        except RETRIED_ERRORS as error:
            # Raised past the transaction, not through it: an outage retried is no Sentry event.
            job.set_status("unavailable")
            outage = error
        else:
            job.set_data("outcome", result.outcome)
            job.set_data("created", result.created)
    if outage is not None:
        raise outage
    if result.outcome == "throttled":
        # Every concurrency slot stayed busy for BROADCAST_SLOT_WAIT_SECONDS: give the process back
        # and look again soon. Not counted against max_retries (those are for outages).
        raise self.retry(countdown=1 + random.random(), max_retries=self.request.retries + 1)  # noqa: S311 (jitter)
    if result.outcome == "leased":
        # Another runner holds the chunk: look again when its lease would have run out.
        raise self.retry(countdown=result.lease_seconds_left + 1)
    return result.created


@shared_task(name="chat.tasks.broadcasts_sweep_task", acks_late=False, ignore_result=True)
def broadcasts_sweep_task() -> dict:
    """Celery beat's sweeper: re-queue chunks whose runner died and broadcasts that stopped moving."""
    return broadcasts_sweep().as_dict()


@shared_task(
    name="chat.tasks.broadcast_run_task",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=RETRIED_ERRORS,
    retry_backoff=1,
    max_retries=10,
)
def broadcast_run_task(broadcast_id: int) -> int:
    """The former one-task-per-broadcast entry point, for messages queued before an upgrade: queue its chunks."""
    return chunks_enqueue(broadcast_id=broadcast_id)
