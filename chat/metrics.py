"""pru_app's own metrics: counters fed by the domain events the log records, and gauges read at scrape time.

Counters and histograms (chunks, messages, fetch and verify outcomes) count what a process did: on the
Celery workers they are served by the worker's own /metrics (CELERY_METRICS_PORT). Gauges of state
(chunks pending and running, open broadcasts and when each last moved, images by status, queue depth)
are read from PostgreSQL and Redis when Prometheus scrapes the web's /metrics, so they are true
whichever process did the work, and survive any restart.
"""

import time
from collections.abc import Iterable, MutableMapping
from typing import Any

from django.conf import settings
from django.db.models import Count, Max
from django.db.models.functions import Greatest
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from chat.models import Broadcast, BroadcastChunk, BroadcastStatus, ChunkStatus, Image, ImageStatus
from core.metrics import NAMESPACE, on_log_event, queue_depth_family, redis_queue_lengths

CHUNKS = Counter(
    "broadcast_chunks_total",
    "Broadcast chunks run, by outcome: done, failed (for good), retried (a transient error), taken_over.",
    ["outcome"],
    namespace=NAMESPACE,
)
MESSAGES_CREATED = Counter(
    "broadcast_messages_created_total", "Messages broadcast chunks created.", namespace=NAMESPACE
)
CHUNK_DURATION = Histogram(
    "broadcast_chunk_duration_seconds",
    "Time a broadcast chunk took, claim to commit.",
    namespace=NAMESPACE,
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
BROADCASTS = Counter(
    "broadcasts_total", "Broadcasts closed, by outcome (succeeded, failed).", ["outcome"], namespace=NAMESPACE
)
FETCHED_PHOTOS = Counter(
    "image_fetch_photos_total",
    "Photos a fetch run handled, by outcome (stored, failed) and kind of failure.",
    ["outcome", "kind"],
    namespace=NAMESPACE,
)
FETCH_RUNS = Counter("image_fetch_runs_total", "fetch_images runs that finished.", namespace=NAMESPACE)
VERIFIED_IMAGES = Counter(
    "image_verify_images_total",
    "Images verify runs checked, by what they found (intact, missing, corrupt, repaired, lost, …).",
    ["outcome"],
    namespace=NAMESPACE,
)
VERIFY_RUNS = Counter(
    "image_verify_runs_total", "verify_images runs, by outcome (clean, problems).", ["outcome"], namespace=NAMESPACE
)
VERIFY_LAST_SUCCESS = Gauge(
    "image_verify_last_success_timestamp_seconds",
    "When a verify run last finished with nothing left missing or corrupt (Unix time).",
    namespace=NAMESPACE,
    multiprocess_mode="max",
)
VERIFY_OUTCOMES = ("intact", "back_intact", "missing", "corrupt", "repaired", "repair_failed", "lost", "orphans")


def _chunk_finished(event: MutableMapping[str, Any]) -> None:
    CHUNKS.labels("done").inc()
    MESSAGES_CREATED.inc(int(event.get("created") or 0))
    if event.get("ms") is not None:
        CHUNK_DURATION.observe(float(event["ms"]) / 1000)


def _verify_finished(event: MutableMapping[str, Any]) -> None:
    for outcome in VERIFY_OUTCOMES:
        if event.get(outcome):
            VERIFIED_IMAGES.labels(outcome).inc(int(event[outcome]))
    still_wrong = int(event.get("missing") or 0) + int(event.get("corrupt") or 0) - int(event.get("repaired") or 0)
    VERIFY_RUNS.labels("clean" if still_wrong <= 0 else "problems").inc()
    if still_wrong <= 0:
        VERIFY_LAST_SUCCESS.set(time.time())


def connect_event_metrics() -> None:
    """The log events that move the counters above (chat.apps calls it once per process)."""
    # Every outcome from zero: increase() sees a counter's first step only when a 0 came before it.
    for outcome in ("done", "failed", "retried", "taken_over"):
        CHUNKS.labels(outcome)
    for outcome in ("succeeded", "failed"):
        BROADCASTS.labels(outcome)
    for outcome in ("clean", "problems"):
        VERIFY_RUNS.labels(outcome)
    for outcome in VERIFY_OUTCOMES:
        VERIFIED_IMAGES.labels(outcome)
    FETCHED_PHOTOS.labels("stored", "")
    on_log_event("broadcast.chunk_finished", _chunk_finished)
    on_log_event("broadcast.chunk_failed", lambda event: CHUNKS.labels("failed").inc())
    on_log_event("broadcast.chunk_retry", lambda event: CHUNKS.labels("retried").inc())
    on_log_event("broadcast.chunk_taken_over", lambda event: CHUNKS.labels("taken_over").inc())
    on_log_event("broadcast.finished", lambda event: BROADCASTS.labels("succeeded").inc())
    on_log_event("broadcast.failed", lambda event: BROADCASTS.labels("failed").inc())
    on_log_event("image_fetch.stored", lambda event: FETCHED_PHOTOS.labels("stored", "").inc())
    on_log_event("image_fetch.failed", lambda event: FETCHED_PHOTOS.labels("failed", str(event.get("kind", ""))).inc())
    on_log_event("image_fetch.finished", lambda event: FETCH_RUNS.inc())
    on_log_event("image_verify.finished", _verify_finished)


# --- read at scrape time ----------------------------------------------------------------------------

OPEN_BROADCAST_STATUSES: tuple[str, ...] = (BroadcastStatus.QUEUED, BroadcastStatus.RUNNING)
LIVE_CHUNK_STATUSES: tuple[str, ...] = (ChunkStatus.PENDING, ChunkStatus.RUNNING)


class DatabaseCollector:
    """Chunks pending and running, open broadcasts and their last movement, images by status: four queries."""

    def collect(self) -> Iterable[Metric]:
        yield self._chunks()
        yield from self._open_broadcasts()
        yield self._images()

    @staticmethod
    def _chunks() -> Metric:
        family = GaugeMetricFamily(
            f"{NAMESPACE}_broadcast_chunks", "Broadcast chunks now pending or running.", labels=["status"]
        )
        counts: dict[str, int] = dict(
            BroadcastChunk.objects.filter(status__in=LIVE_CHUNK_STATUSES)
            .values_list("status")
            .annotate(count=Count("id"))
            .values_list("status", "count")
        )
        for chunk_status in LIVE_CHUNK_STATUSES:
            family.add_metric([chunk_status], counts.get(chunk_status, 0))
        return family

    @staticmethod
    def _open_broadcasts() -> Iterable[Metric]:
        open_broadcasts = GaugeMetricFamily(
            f"{NAMESPACE}_broadcasts_open", "Broadcasts queued or running.", labels=["status"]
        )
        moved = GaugeMetricFamily(
            f"{NAMESPACE}_broadcast_last_progress_timestamp_seconds",
            "When an open broadcast last moved: started, or a chunk queued, claimed or finished (Unix time).",
            labels=["broadcast_id"],
        )
        by_status: dict[str, int] = dict.fromkeys(OPEN_BROADCAST_STATUSES, 0)
        rows = (
            Broadcast.objects.filter(status__in=OPEN_BROADCAST_STATUSES)
            # PostgreSQL's GREATEST skips NULLs: the latest of whatever each chunk has recorded.
            .annotate(chunk_moved=Max(Greatest("chunks__queued_at", "chunks__claimed_at", "chunks__finished_at")))
            .values_list("pk", "status", "started_at", "chunk_moved")
        )
        for broadcast_id, broadcast_status, started_at, chunk_moved in rows:
            by_status[broadcast_status] += 1
            last = max(moment for moment in (started_at, chunk_moved) if moment is not None)
            moved.add_metric([str(broadcast_id)], last.timestamp())
        for broadcast_status, count in by_status.items():
            open_broadcasts.add_metric([broadcast_status], count)
        return [open_broadcasts, moved]

    @staticmethod
    def _images() -> Metric:
        family = GaugeMetricFamily(
            f"{NAMESPACE}_images",
            "Images by status: stored, pending, failed, and missing, corrupt or lost as verify found them.",
            labels=["status"],
        )
        counts: dict[str, int] = dict(
            Image.objects.values_list("status").annotate(count=Count("id")).values_list("status", "count")
        )
        for image_status in ImageStatus.values:
            family.add_metric([image_status], counts.get(image_status, 0))
        return family


def celery_queue_names() -> list[str]:
    """The queues the workers consume: the default one, and the sweeper's and broadcasts' where configured."""
    default = settings.CELERY_TASK_DEFAULT_QUEUE
    names = [default]
    for setting in ("CELERY_SWEEPER_QUEUE", "CELERY_BROADCAST_QUEUE"):
        name = getattr(settings, setting, "")
        if name:
            names.append(name)
    return names


class QueueDepthCollector:
    """LLEN of every Celery queue on the Redis broker (nothing without one)."""

    def collect(self) -> Iterable[Metric]:
        broker_url = settings.CELERY_BROKER_URL
        if not broker_url.startswith(("redis://", "rediss://", "unix://")):
            return
        yield queue_depth_family(redis_queue_lengths(broker_url=broker_url, queues=celery_queue_names()))
