"""A broadcast's progress as its chunks tell it, and who may send one."""

from dataclasses import dataclass

from django.db.models import Count, DurationField, ExpressionWrapper, F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce, Now

from chat.models import BroadcastChunk, ChunkStatus


def user_may_send_broadcasts(user) -> bool:
    """A broadcast creates messages: it takes both permissions (the admin's send and resume actions)."""
    return bool(user.has_perm("chat.add_broadcast") and user.has_perm("chat.add_message"))


def broadcasts_with_progress(queryset):
    """Broadcasts annotated with what their chunks say, per row (a correlated subquery runs for the page only)."""
    chunks = BroadcastChunk.objects.filter(broadcast=OuterRef("pk")).order_by().values("broadcast")
    done = chunks.filter(status=ChunkStatus.SUCCEEDED)

    def total(subquery, expression):
        return Coalesce(Subquery(subquery.annotate(total=expression).values("total")), 0)

    return queryset.annotate(
        chunks_done=total(done, Count("pk")),
        chunks_failed=total(chunks.filter(status=ChunkStatus.FAILED), Count("pk")),
        chunks_running=total(chunks.filter(status=ChunkStatus.RUNNING, leased_until__gte=Now()), Count("pk")),
        created_so_far=total(done, Sum("created_count")),
        skipped_so_far=total(done, Sum("skipped_count")),
        # On the database's clock, which wrote started_at and finished_at.
        elapsed=ExpressionWrapper(Coalesce("finished_at", Now()) - F("started_at"), output_field=DurationField()),
    )


@dataclass(frozen=True)
class BroadcastProgress:
    chunks_done: int
    chunk_count: int
    created: int
    skipped: int
    messages_per_second: float | None
    eta_seconds: float | None
    running_chunks: int
    failed_chunks: int

    @property
    def stalled(self) -> bool:
        """Unfinished work and nobody holding a lease on any of it."""
        return self.chunks_done + self.failed_chunks < self.chunk_count and not self.running_chunks


def broadcast_progress(broadcast) -> BroadcastProgress:
    """Progress of a broadcast annotated by broadcasts_with_progress (or loaded on its own)."""
    if not hasattr(broadcast, "chunks_done"):
        broadcast = broadcasts_with_progress(type(broadcast).objects.filter(pk=broadcast.pk)).get()
    finished = broadcast.finished_at is not None
    created = broadcast.created_count if finished else broadcast.created_so_far
    skipped = broadcast.skipped_count if finished else broadcast.skipped_so_far
    elapsed = broadcast.elapsed.total_seconds()
    rate = created / elapsed if elapsed > 0 and created else None
    eta = None
    if not finished and broadcast.chunks_done and elapsed > 0:
        left = broadcast.chunk_count - broadcast.chunks_done - broadcast.chunks_failed
        eta = left * elapsed / broadcast.chunks_done
    return BroadcastProgress(
        chunks_done=broadcast.chunks_done,
        chunk_count=broadcast.chunk_count,
        created=created,
        skipped=skipped,
        messages_per_second=rate,
        eta_seconds=eta,
        running_chunks=broadcast.chunks_running,
        failed_chunks=broadcast.chunks_failed,
    )
