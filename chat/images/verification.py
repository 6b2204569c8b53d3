"""verify_images: every stored row checked against its object, a batch of rows at a time.

Like restic's `check` and `rclone check`: read what is stored, compare it with what was recorded,
say exactly what is missing or wrong. A whole run compares a bucket listing (key, size, ETag) with
the rows, merged in key order (chat.images.verify_listing): an object whose listing entry is what
its row recorded needs no request of its own; only the others are looked up (HEAD), or read and
hashed when their ETag differs, and every object of a --deep run or a --deep-sample. A selection
of rows (the admin's "Verify selected") is looked up one HEAD per row. A row's state is only
changed on the storage's own answer about its object; a storage that does not answer stops the run
before anything of the batch is written.
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
    object_listing,
    object_modified_at,
)
from chat.images.repair import image_repair_rows
from chat.images.verify_listing import ListedRow, merge_by_key, rows_by_key
from chat.images.verify_reports import ImageProblem, ImageVerifySummary, PassCounts
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
    "etag",
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
    deep_sample: int = 0,
    workers: int | None = None,
    batch_size: int | None = None,
    orphan_min_age: timedelta = timedelta(hours=1),
    storage: Storage | None = None,
    on_batch: Callable[[ImageVerifySummary], None] | None = None,
) -> ImageVerifySummary:
    """Check stored, missing and corrupt rows (all, or image_ids) against their objects; orphans too when checking all.

    read_data (--deep) reads and hashes every object; deep_sample reads that many rows' objects
    chosen at random, the rest compared by listing. on_batch is called after each batch (progress).
    repair downloads broken ones again from source_url (lost when the source is gone);
    delete_orphans removes objects no row names that are older than orphan_min_age (younger
    ones may belong to a fetch that has not written its rows yet). Raises StorageUnavailable
    when the storage does not answer (the batches finished before stay written), and with
    repair or delete_orphans FetchAlreadyRunning while a fetch run is going.
    """
    storage = storage or default_storage
    workers = workers or settings.IMAGE_VERIFY_WORKERS
    batch_size = batch_size or settings.IMAGE_VERIFY_BATCH_SIZE
    if workers < 1 or batch_size < 1 or deep_sample < 0:
        raise ValueError("workers and batch_size must be positive, deep_sample not negative")
    ids = None if image_ids is None else sorted(set(image_ids))
    summary = ImageVerifySummary(where=storage_describe(storage=storage))
    started = time.monotonic()
    logger.info(
        "image_verify.started",
        where=summary.where,
        repair=repair,
        delete_orphans=delete_orphans,
        read_data=read_data,
        deep_sample=deep_sample,
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
            deep_sample=deep_sample,
            workers=workers,
            batch_size=batch_size,
            orphan_min_age=orphan_min_age,
            on_batch=on_batch or (lambda summary: None),
            started=started,
        )


def _verify_locked(
    *,
    summary,
    storage,
    ids,
    repair,
    delete_orphans,
    read_data,
    deep_sample,
    workers,
    batch_size,
    orphan_min_age,
    on_batch,
    started,
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
            if ids is None:
                summary.originals = originals_verify_pass(
                    listing=object_listing(storage=storage, page_size=min(batch_size, 1000)),
                    run=run,
                    batch_size=batch_size,
                    deep_ids=_deep_sample_ids(deep_sample),
                    on_batch=on_batch,
                    on_unnamed=lambda objects: _find_orphans(
                        summary=summary, storage=storage, objects=objects, delete=delete_orphans, min_age=orphan_min_age
                    ),
                )
            else:
                for rows in _row_batches(ids=ids, batch_size=batch_size):
                    run.verify_batch(rows)
                    on_batch(summary)
        lost_rows = Image.objects.filter(status=ImageStatus.LOST)
        summary.lost_before = (lost_rows.filter(pk__in=ids) if ids is not None else lost_rows).count() - summary.lost
    finally:
        if session is not None:
            session.close()
        summary.seconds = time.monotonic() - started
        logger.info("image_verify.finished", where=summary.where, **summary.as_log_fields())
    return summary


def image_verifiable_count() -> int:
    """Rows a whole run checks (a progress bar's total)."""
    return Image.objects.filter(status__in=VERIFIABLE_STATUSES).exclude(file="").count()


def originals_verify_pass(
    *,
    listing: Iterable[StoredObject],
    run: "_VerifyRun",
    batch_size: int,
    deep_ids: frozenset[int] = frozenset(),
    on_batch: Callable[[ImageVerifySummary], None] = lambda summary: None,
    on_unnamed: Callable[[list[StoredObject]], None] = lambda objects: None,
) -> PassCounts:
    """Every original's row against the listing of images/: rows and keys merged in key order.

    Rows of every state that name a key count as naming it (a lost row's object is no orphan);
    stored, missing and corrupt rows are checked. on_unnamed gets the listed objects no row named,
    a page at a time. Memory: one batch of rows and two listing pages.
    """
    counts = PassCounts()
    rows = Image.objects.only(*_ROW_FIELDS)
    for pairs, unnamed in merge_by_key(row_batches=rows_by_key(rows, batch_size=batch_size), listing=listing):
        if pairs:
            run.verify_listed(pairs, deep_ids=deep_ids, counts=counts)
            on_batch(run.summary)
        if unnamed:
            counts.unnamed += len(unnamed)
            on_unnamed(unnamed)
    return counts


def _deep_sample_ids(size: int) -> frozenset[int]:
    """size verifiable rows chosen at random (ORDER BY random()): their objects are read whatever the listing says."""
    if not size:
        return frozenset()
    rows = Image.objects.filter(status__in=VERIFIABLE_STATUSES).exclude(file="").order_by("?")
    return frozenset(rows.values_list("pk", flat=True)[:size])


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

    def verify_listed(self, pairs: list[ListedRow], *, deep_ids: frozenset[int], counts: PassCounts) -> None:
        """A batch of rows with their listing entries: those that match what was recorded need no request."""
        decided: list[tuple[Image, ObjectFacts]] = []
        looked_up: list[tuple[Image, bool]] = []
        for pair in pairs:
            row, listed = pair.row, pair.listed
            if row.status not in VERIFIABLE_STATUSES:
                continue
            deep = self.read_data or row.pk in deep_ids
            if (
                listed is not None
                and not deep
                and row.etag
                and listed.etag == row.etag
                and listed.byte_size == row.byte_size
            ):
                # The ETag the upload answered, still there with the same size: the recorded bytes.
                decided.append((row, ObjectFacts(exists=True, byte_size=row.byte_size, sha256="", etag=row.etag)))
                continue
            # Not listed (perhaps stored after this page was listed: HEAD decides), another size
            # (HEAD confirms), no ETag recorded yet (HEAD: the sha256 metadata, or the bytes hashed
            # when there is none), another ETag of the same size (the bytes hashed), or --deep.
            other_etag = listed is not None and bool(row.etag) and listed.etag != row.etag
            read = deep or (other_etag and listed is not None and listed.byte_size == row.byte_size)
            looked_up.append((row, read))
        futures = [
            self.executor.submit(
                object_facts, storage=self.storage, key=row.file.name, read_data=read, expected_size=row.byte_size
            )
            for row, read in looked_up
        ]
        # Every answer first: one refused or unanswered request and nothing of the batch is written.
        facts = [future.result() for future in futures]
        counts.by_listing += len(decided)
        counts.looked_up += sum(1 for _, read in looked_up if not read)
        counts.read += sum(1 for _, read in looked_up if read)
        counts.checked += len(decided) + len(looked_up)
        self._judge_and_write([*decided, *zip([row for row, _ in looked_up], facts, strict=True)])

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
        self._judge_and_write(list(zip(rows, facts, strict=True)))

    def _judge_and_write(self, checked: list[tuple[Image, ObjectFacts]]) -> None:
        now = timezone.now()
        intact, problems = [], []
        for row, fact in checked:
            state, reason = _judge(row, fact, where=self.summary.where)
            if state is None:
                intact.append((row, fact.etag))
            else:
                problems.append((row, state, reason))
        self._write_intact(intact, now=now)
        self._write_problems(problems, now=now)
        self.summary.checked += len(checked)
        if self.repair_session is not None and problems:
            self._repair(problems, session=self.repair_session)

    def _write_intact(self, checked: list[tuple[Image, str]], *, now) -> None:
        self.summary.intact += len(checked)
        # The bytes were found to be the recorded ones: record the ETag they have now (the first
        # verify of a row stored before ETags were recorded, or a copy put back by a restore).
        new_etags = [(row, etag) for row, etag in checked if etag and etag != row.etag]
        if new_etags:
            _unchanged([row for row, _ in new_etags]).update(
                etag=Case(*[When(pk=row.pk, then=Value(etag)) for row, etag in new_etags])
            )
            self.summary.etags_recorded += len(new_etags)
            for row, etag in new_etags:
                row.etag = etag
        rows = [row for row, _ in checked]
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
    """(None, "") when the object is the one the row recorded, else (missing|corrupt, why).

    row.file only for a problem: a FieldFile and its row refer to each other, and such a row
    outlives its batch until a full garbage collection (verify_listing.merge_by_key says more).
    """
    if not fact.exists:
        return ImageStatus.MISSING, f"object {row.file.name} not found in {where}"
    if row.byte_size is not None and fact.byte_size != row.byte_size:
        return (
            ImageStatus.CORRUPT,
            f"object {row.file.name} has {fact.byte_size} bytes, the row recorded {row.byte_size}",
        )
    # Objects stored before the ingestion wrote sha256 into the metadata are checked by size only.
    if fact.sha256 and row.sha256 and fact.sha256 != row.sha256:
        return (
            ImageStatus.CORRUPT,
            f"object {row.file.name} has sha256 {fact.sha256[:16]}…, the row recorded {row.sha256[:16]}…",
        )
    return None, ""


def _unchanged(rows: list[Image]):
    """The rows, as long as each still names the same object it had when read."""
    condition = Q()
    for row in rows:
        condition |= Q(pk=row.pk, status=row.status, file=row.file.name, stored_at=row.stored_at)
    return Image.objects.filter(condition)


def _find_orphans(
    *, summary: ImageVerifySummary, storage: Storage, objects: list[StoredObject], delete: bool, min_age: timedelta
) -> None:
    """Listed objects under images/ that no row named: reported, and deleted when asked and old enough.

    Deleting runs under the fetch lock (image_verify_all), so no fetch or repair uploads or records
    a key meanwhile; each candidate is still checked again right before its delete, against the
    rows and against the object's own modification time, so a writer outside the lock (an older
    release during a deploy, a hand-run script) costs at most an orphan kept, never a stored image.
    """
    cutoff = timezone.now() - min_age
    keys = [stored.key for stored in objects]
    # Asked again now: a fetch may have written the row since the rows were read.
    named = set(Image.objects.filter(file__in=keys).values_list("file", flat=True))
    candidates = []
    for stored in objects:
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
