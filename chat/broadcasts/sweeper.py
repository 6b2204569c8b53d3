"""The sweeper: recovery without a person, run by Celery beat every BROADCAST_SWEEP_SECONDS.

It trusts nothing a process keeps in memory. A chunk says running with a lease on the database's
clock; a lease that ran out means its runner died (or lost its database) and the chunk is pending
again. A broadcast with pending chunks and no chunk queued, claimed or finished for
BROADCAST_STALL_SECONDS has lost its queue messages (broker down at send time, broker restarted
without persistence, a worker killed with messages it had reserved): its pending chunks are
queued again. Running it twice, or on two machines at once, does no harm.
"""

from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta

import structlog
from django.conf import settings
from django.db.models import DateTimeField, DurationField, Exists, ExpressionWrapper, OuterRef, Q, Value
from django.db.models.functions import Now

from chat.broadcasts.chunks import broadcast_close_if_done, lease_expired
from chat.broadcasts.queue import BrokerUnavailable, chunks_enqueue
from chat.models import UNFINISHED_BROADCAST_STATUSES, Broadcast, BroadcastChunk, ChunkStatus
from core.database import TRANSIENT_DATABASE_ERRORS

logger = structlog.get_logger(__name__)


@dataclass
class SweepReport:
    expired_leases: int = 0
    gave_up: int = 0
    requeued_broadcasts: list[int] = field(default_factory=list)
    requeued_chunks: int = 0
    closed_broadcasts: list[int] = field(default_factory=list)
    broker_unavailable: bool = False
    failed_broadcasts: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def broadcasts_sweep() -> SweepReport:
    """Release expired leases, fail chunks out of attempts, re-queue stalled broadcasts, close finished ones."""
    report = SweepReport()
    expired = BroadcastChunk.objects.filter(lease_expired())
    touched = set(expired.values_list("broadcast_id", flat=True))
    report.gave_up = expired.filter(attempts__gte=settings.BROADCAST_CHUNK_MAX_ATTEMPTS).update(
        status=ChunkStatus.FAILED,
        leased_until=None,
        finished_at=Now(),
        last_error=f"Its runner was lost {settings.BROADCAST_CHUNK_MAX_ATTEMPTS} times (lease expired).",
    )
    # Queued again at once below.
    report.expired_leases = expired.update(status=ChunkStatus.PENDING, leased_until=None, queued_at=None)

    # Includes a broadcast whose last chunk committed but whose runner died before closing it.
    for broadcast_id in _done_but_open_broadcast_ids():
        with _each_broadcast_on_its_own(report, broadcast_id):
            if broadcast_close_if_done(broadcast_id=broadcast_id):
                report.closed_broadcasts.append(broadcast_id)

    for broadcast_id in _stalled_broadcast_ids(released=touched):
        published = 0
        with _each_broadcast_on_its_own(report, broadcast_id):
            try:
                published = chunks_enqueue(broadcast_id=broadcast_id)
            except BrokerUnavailable as error:
                report.broker_unavailable = True
                logger.warning("broadcast.enqueue_failed", broadcast_id=broadcast_id, error=str(error))
        if report.broker_unavailable:
            break
        if published:
            report.requeued_broadcasts.append(broadcast_id)
            report.requeued_chunks += published
            logger.warning("broadcast.chunks_requeued", broadcast_id=broadcast_id, chunks=published)

    if (
        report.expired_leases
        or report.gave_up
        or report.requeued_chunks
        or report.closed_broadcasts
        or report.failed_broadcasts
    ):
        logger.info("broadcast.swept", **report.as_dict())
    return report


@contextmanager
def _each_broadcast_on_its_own(report: SweepReport, broadcast_id: int):
    """One broadcast that cannot be swept (a bad row, a bug) is reported, and the sweep goes on with the others.

    Database outages are not caught: the whole sweep fails and the next one starts over.
    """
    try:
        # broadcast_close_if_done runs in its own transaction (a savepoint inside a caller's), so a
        # statement that failed there leaves this connection usable for the next broadcast.
        yield
    except TRANSIENT_DATABASE_ERRORS:
        raise
    except Exception as error:
        report.failed_broadcasts.append(broadcast_id)
        # An error event with the traceback: SentryLogProcessor reports it to Sentry.
        logger.error("broadcast.sweep_failed", broadcast_id=broadcast_id, error=repr(error), exc_info=error)


def _done_but_open_broadcast_ids() -> list[int]:
    open_chunks = BroadcastChunk.objects.filter(
        broadcast=OuterRef("pk"), status__in=[ChunkStatus.PENDING, ChunkStatus.RUNNING]
    )
    return list(
        Broadcast.objects.filter(status__in=UNFINISHED_BROADCAST_STATUSES)
        .exclude(Exists(open_chunks))
        .values_list("pk", flat=True)
    )


def _stalled_broadcast_ids(*, released: set[int]) -> list[int]:
    """Unfinished broadcasts with pending chunks: those whose leases this sweep released, and
    those of which nothing moved (created, queued, claimed or finished) for BROADCAST_STALL_SECONDS.

    One query, on the database's clock, which wrote every time it compares.
    """
    quiet_since = ExpressionWrapper(
        Now() - Value(timedelta(seconds=settings.BROADCAST_STALL_SECONDS), output_field=DurationField()),
        output_field=DateTimeField(),
    )
    chunks = BroadcastChunk.objects.filter(broadcast=OuterRef("pk")).order_by()
    moved = chunks.filter(
        Q(queued_at__gte=quiet_since) | Q(claimed_at__gte=quiet_since) | Q(finished_at__gte=quiet_since)
    )
    return list(
        Broadcast.objects.filter(status__in=UNFINISHED_BROADCAST_STATUSES)
        .filter(Exists(chunks.filter(status=ChunkStatus.PENDING)))
        .filter(Q(pk__in=released) | (Q(started_at__lt=quiet_since) & ~Exists(moved)))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
