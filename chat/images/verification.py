"""verify_images: every stored row checked against its object, concurrently, a batch of rows at a time.

Like restic's `check`: read what is stored, compare it with what was recorded, say exactly what
is missing or wrong. A row's state is only changed on the storage's own answer about its object;
a storage that does not answer stops the run before anything of the batch is written.
"""

import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from datetime import timedelta

import requests
import structlog
from django.conf import settings
from django.core.files.storage import Storage, default_storage
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from chat.images.fetch_lock import image_fetch_lock
from chat.images.objects import (
    ObjectFacts,
    StoredObject,
    object_delete,
    object_facts,
    object_keys,
    object_modified_at,
)
from chat.images.repair import image_repair_rows
from chat.images.verify_reports import ImageProblem, ImageVerifySummary
from chat.models import VERIFIABLE_STATUSES, Image, ImageStatus
from core.concurrency import ContextThreadPool, fewer_gil_handoffs
from core.object_storage import storage_check, storage_describe
from core.outbound_http import OutboundPolicy, outbound_session

logger = structlog.get_logger(__name__)


class VerifyFoundProblems(Exception):
    """A verify run finished and something is still wrong (for callers that must fail, like the scheduled task)."""

    def __init__(self, summary: ImageVerifySummary):
        self.summary = summary
        super().__init__(
            f"{summary.still_wrong} image(s) missing or corrupt, {summary.orphans - summary.orphans_deleted} orphan(s) "
            f"in {summary.where}"
        )


_ROW_FIELDS = [
    "id",
    "photo_id",
    "source_url",
    "title",
    "description",
    "api_user_id",
    "status",
    "file",
    "byte_size",
    "sha256",
    "stored_at",
    "attempts",
    "last_error",
]


def image_verify_all(
    *,
    image_ids: Iterable[int] | None = None,
    repair: bool = False,
    delete_orphans: bool = False,
    read_data: bool = False,
    workers: int | None = None,
    batch_size: int | None = None,
    orphan_min_age: timedelta = timedelta(hours=1),
    storage: Storage | None = None,
    on_batch: Callable[[ImageVerifySummary], None] | None = None,
) -> ImageVerifySummary:
    """Check stored, missing and corrupt rows (all, or image_ids) against their objects; orphans too when checking all.

    repair downloads broken ones again from source_url (lost when the source is gone);
    delete_orphans removes objects no row names that are older than orphan_min_age (younger
    ones may belong to a fetch that has not written its rows yet). Raises StorageUnavailable
    when the storage does not answer (the batches finished before stay written), and with
    repair or delete_orphans FetchAlreadyRunning while a fetch run is going.
    """
    storage = storage or default_storage
    workers = workers or settings.IMAGE_VERIFY_WORKERS
    batch_size = batch_size or settings.IMAGE_VERIFY_BATCH_SIZE
    if workers < 1 or batch_size < 1:
        raise ValueError("workers and batch_size must be positive")
    ids = None if image_ids is None else sorted(set(image_ids))
    summary = ImageVerifySummary(where=storage_describe(storage=storage))
    started = time.monotonic()
    logger.info(
        "image_verify.started",
        where=summary.where,
        repair=repair,
        delete_orphans=delete_orphans,
        read_data=read_data,
        workers=workers,
        selected=None if ids is None else len(ids),
    )
    # --repair downloads: never alongside a fetch run, which would download the same photos.
    # --delete-orphans deletes: never alongside a fetch or repair, which may upload and record
    # the very key it judged an orphan from its listing (docs/concurrency.md).
    with image_fetch_lock() if repair or delete_orphans else nullcontext():
        return _verify_locked(
            summary=summary,
            storage=storage,
            ids=ids,
            repair=repair,
            delete_orphans=delete_orphans,
            read_data=read_data,
            workers=workers,
            batch_size=batch_size,
            orphan_min_age=orphan_min_age,
            on_batch=on_batch,
            started=started,
        )


def _verify_locked(
    *, summary, storage, ids, repair, delete_orphans, read_data, workers, batch_size, orphan_min_age, on_batch, started
) -> ImageVerifySummary:
    storage_check(storage=storage)
    session = outbound_session(OutboundPolicy.from_settings(pool_size=workers)) if repair else None
    try:
        # Waiting threads give the GIL up on their sockets anyway; fewer forced handoffs save CPU (as in the fetch).
        with (
            fewer_gil_handoffs(),
            ContextThreadPool(max_workers=workers, thread_name_prefix="image-verify") as executor,
        ):
            run = _VerifyRun(
                summary=summary, storage=storage, read_data=read_data, executor=executor, repair_session=session
            )
            for rows in _row_batches(ids=ids, batch_size=batch_size):
                run.verify_batch(rows)
                (on_batch or (lambda summary: None))(summary)
        if ids is None:
            _find_orphans(summary=summary, storage=storage, delete=delete_orphans, min_age=orphan_min_age)
        lost_rows = Image.objects.filter(status=ImageStatus.LOST)
        summary.lost_before = (lost_rows.filter(pk__in=ids) if ids is not None else lost_rows).count() - summary.lost
    finally:
        if session is not None:
            session.close()
        summary.seconds = time.monotonic() - started
        logger.info("image_verify.finished", where=summary.where, **summary.as_log_fields())
    return summary


def _row_batches(*, ids: list[int] | None, batch_size: int):
    """Rows to check by ascending id, one query a batch: memory holds one batch whatever the table's size."""
    rows = Image.objects.filter(status__in=VERIFIABLE_STATUSES).exclude(file="").only(*_ROW_FIELDS).order_by("pk")
    last_id = 0
    while True:
        query = rows.filter(pk__gt=last_id)
        if ids is not None:
            chunk = [pk for pk in ids if pk > last_id][:batch_size]
            if not chunk:
                return
            query = query.filter(pk__in=chunk, pk__lte=chunk[-1])
            last_id = chunk[-1]
        batch = list(query[:batch_size])
        if ids is None:
            if not batch:
                return
            last_id = batch[-1].pk
        if batch:
            yield batch


class _VerifyRun:
    def __init__(
        self,
        *,
        summary: ImageVerifySummary,
        storage: Storage,
        read_data: bool,
        executor: ContextThreadPool,
        repair_session: requests.Session | None,
    ):
        """repair_session: downloads broken images again when given (verify_images --repair)."""
        self.summary, self.storage, self.read_data = summary, storage, read_data
        self.executor, self.repair_session = executor, repair_session

    def verify_batch(self, rows: list[Image]) -> None:
        futures = [
            self.executor.submit(
                object_facts,
                storage=self.storage,
                key=row.file.name,
                read_data=self.read_data,
                expected_size=row.byte_size,
            )
            for row in rows
        ]
        # Every answer first: one refused or unanswered request and nothing of the batch is written.
        facts = [future.result() for future in futures]
        now = timezone.now()
        intact, problems = [], []
        for row, fact in zip(rows, facts, strict=True):
            state, reason = _judge(row, fact, where=self.summary.where)
            if state is None:
                intact.append(row)
            else:
                problems.append((row, state, reason))
        self._write_intact(intact, now=now)
        self._write_problems(problems, now=now)
        self.summary.checked += len(rows)
        if self.repair_session is not None and problems:
            self._repair(problems, session=self.repair_session)

    def _write_intact(self, rows: list[Image], *, now) -> None:
        self.summary.intact += len(rows)
        stored = [row.pk for row in rows if row.status == ImageStatus.STORED]
        back = [row for row in rows if row.status != ImageStatus.STORED]
        if stored:
            Image.objects.filter(pk__in=stored, status=ImageStatus.STORED).update(verified_at=now)
        if back:
            # Marked missing or corrupt before and whole now (restored from a backup, say).
            updated = _unchanged(back).update(status=ImageStatus.STORED, last_error="", verified_at=now, updated_at=now)
            self.summary.back_intact += updated
            for row in back:
                logger.info("image_verify.intact_again", image_id=row.pk, key=row.file.name, was=row.status)

    def _write_problems(self, problems: list[tuple[Image, str, str]], *, now) -> None:
        if not problems:
            return
        # One UPDATE for the batch, each row only if no fetch re-stored it since it was read.
        _unchanged([row for row, _, _ in problems]).update(
            status=Case(*[When(pk=row.pk, then=Value(state)) for row, state, _ in problems]),
            last_error=Case(*[When(pk=row.pk, then=Value(reason[:2000])) for row, _, reason in problems]),
            verified_at=now,
            updated_at=now,
        )
        for row, state, reason in problems:
            state = str(state)
            setattr(self.summary, state, getattr(self.summary, state) + 1)
            self.summary.add_problem(ImageProblem(image_id=row.pk, key=row.file.name or "", state=state, reason=reason))
            if state == ImageStatus.MISSING:
                logger.warning("image_verify.missing", image_id=row.pk, key=row.file.name, reason=reason)
            else:
                logger.warning("image_verify.corrupt", image_id=row.pk, key=row.file.name, reason=reason)
            row.status, row.last_error = state, reason

    def _repair(self, problems: list[tuple[Image, str, str]], *, session: requests.Session) -> None:
        rows = [row for row, _, _ in problems]
        batch = image_repair_rows(
            rows=rows,
            previous_problems=[row.last_error for row in rows],
            pool=self.executor,
            session=session,
            storage=self.storage,
        )
        for row, result in batch.done:
            if result.repaired:
                self.summary.repaired += 1
                logger.info("image_verify.repaired", image_id=row.pk, key=row.file.name, bytes=row.byte_size)
            else:
                self.summary.repair_failed += 1
                self.summary.lost += result.lost
                self.summary.add_problem(
                    ImageProblem(image_id=row.pk, key=row.file.name or "", state=row.status, reason=result.reason)
                )
                if result.lost:
                    logger.warning(
                        "image_verify.lost", image_id=row.pk, source_url=row.source_url, reason=result.reason
                    )
                else:
                    logger.warning(
                        "image_verify.repair_failed", image_id=row.pk, source_url=row.source_url, reason=result.reason
                    )
        batch.raise_storage_failure()


def _judge(row: Image, fact: ObjectFacts, *, where: str) -> tuple[str | None, str]:
    """(None, "") when the object is the one the row recorded, else (missing|corrupt, why)."""
    key = row.file.name
    if not fact.exists:
        return ImageStatus.MISSING, f"object {key} not found in {where}"
    if row.byte_size is not None and fact.byte_size != row.byte_size:
        return ImageStatus.CORRUPT, f"object {key} has {fact.byte_size} bytes, the row recorded {row.byte_size}"
    # Objects stored before the ingestion wrote sha256 into the metadata are checked by size only.
    if fact.sha256 and row.sha256 and fact.sha256 != row.sha256:
        return ImageStatus.CORRUPT, f"object {key} has sha256 {fact.sha256[:16]}…, the row recorded {row.sha256[:16]}…"
    return None, ""


def _unchanged(rows: list[Image]):
    """The rows, as long as each still names the same object it had when read."""
    condition = Q()
    for row in rows:
        condition |= Q(pk=row.pk, status=row.status, file=row.file.name, stored_at=row.stored_at)
    return Image.objects.filter(condition)


def _find_orphans(*, summary: ImageVerifySummary, storage: Storage, delete: bool, min_age: timedelta) -> None:
    """Objects under images/ that no row names: reported, and deleted when asked and old enough.

    Deleting runs under the fetch lock (image_verify_all), so no fetch or repair uploads or records
    a key meanwhile; each candidate is still checked again right before its delete, against the
    rows and against the object's own modification time, so a writer outside the lock (an older
    release during a deploy, a hand-run script) costs at most an orphan kept, never a stored image.
    """
    cutoff = timezone.now() - min_age
    for page in object_keys(storage=storage):
        keys = [stored.key for stored in page]
        named = set(Image.objects.filter(file__in=keys).values_list("file", flat=True))
        candidates = []
        for stored in page:
            if stored.key in named:
                continue
            summary.add_orphan(stored.key)
            old_enough = stored.modified_at <= cutoff
            logger.warning(
                "image_verify.orphan",
                key=stored.key,
                modified_at=stored.modified_at.isoformat(),
                deleted=delete and old_enough,
            )
            if not delete:
                continue
            if old_enough:
                candidates.append(stored)
            else:
                summary.orphans_too_recent += 1
        if candidates:
            _delete_orphans(candidates, summary=summary, storage=storage, cutoff=cutoff)


def _delete_orphans(candidates: list[StoredObject], *, summary: ImageVerifySummary, storage: Storage, cutoff) -> None:
    # The object first, the rows last: every writer uploads before it records, so the row check
    # closest to the delete is the one that matters.
    unchanged = []
    for stored in candidates:
        modified_at = object_modified_at(storage=storage, key=stored.key)
        # Gone, rewritten or young again since the listing: not this run's to delete.
        if modified_at is not None and _seconds(modified_at) == _seconds(stored.modified_at) and modified_at <= cutoff:
            unchanged.append(stored)
        else:
            summary.orphans_too_recent += 1
            logger.info("image_verify.orphan_kept", key=stored.key, reason="changed since the listing")
    named_now = set(Image.objects.filter(file__in=[stored.key for stored in unchanged]).values_list("file", flat=True))
    for stored in unchanged:
        if stored.key in named_now:
            summary.orphans_too_recent += 1
            logger.info("image_verify.orphan_kept", key=stored.key, reason="a row names it since the listing")
            continue
        object_delete(storage=storage, key=stored.key)
        summary.orphans_deleted += 1


def _seconds(moment):
    # A listing's times carry milliseconds, a HEAD's Last-Modified whole seconds.
    return moment.replace(microsecond=0)
