"""The broadcast state machine against a model, on real PostgreSQL (Hypothesis stateful; issue 16, Required 8).

Random interleavings of create, claim, commit, fail, lease expiry, sweep, resume and close,
some with a commit in flight on a second connection (held by a gate, chat/tests/race_gates.py)
while another actor acts. After every step: the counts are the sums of the chunks, the status
each row shows is true, no chunk is pending or running under a finished broadcast, every message
was created by exactly one committed chunk, and each finish is logged exactly once.

Bounded (max_examples, stateful_step_count) so it runs in well under a minute.
"""

import itertools
import logging
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Sum
from django.db.models.functions import Now
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from chat.broadcasts import chunks as chunk_steps
from chat.broadcasts.chunks import broadcast_close_if_done
from chat.broadcasts.sending import broadcast_create, broadcast_resume
from chat.broadcasts.sweeper import broadcasts_sweep
from chat.models import Broadcast, BroadcastChunk, BroadcastStatus, Chat, ChunkStatus, Message
from chat.tests.celery_worker import new_queue_name, publishing_to
from chat.tests.race_gates import gate, in_thread, wait_for_lock_waits

pytestmark = pytest.mark.django_db(transaction=True)

CHATS, IMAGES = 4, 3
FINISH_EVENTS = {"broadcast.finished", "broadcast.failed"}


class EventLog(logging.Handler):
    """The structlog events of chat.broadcasts (they reach the stdlib logger as dicts)."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.events: list[dict] = []

    def emit(self, record):
        if isinstance(record.msg, dict):
            self.events.append(record.msg)

    def count(self, names, broadcast_id) -> int:
        return sum(
            1 for event in self.events if event.get("event") in names and event.get("broadcast_id") == broadcast_id
        )


class BroadcastMachine(RuleBasedStateMachine):
    log: EventLog
    image_ids: list[int]

    def __init__(self):
        super().__init__()
        Message.objects.all().delete()
        Broadcast.objects.all().delete()  # and their chunks
        self.log.events.clear()
        self.broadcasts: list[int] = []
        # In-flight runs: claimed, not yet committed or failed (chunk row, claim token).
        self.runs: dict[str, tuple[BroadcastChunk, object]] = {}
        self.owners = (f"run-{number}" for number in itertools.count())

    # --- actors -------------------------------------------------------------------------------

    @rule(images=st.sets(st.sampled_from(range(IMAGES)), min_size=1), chunk_messages=st.integers(1, 8))
    def create(self, images, chunk_messages):
        broadcast = broadcast_create(
            image_ids=[self.image_ids[index] for index in images], chunk_messages=chunk_messages
        )
        self.broadcasts.append(broadcast.pk)

    @precondition(lambda self: self.broadcasts)
    @rule(data=st.data())
    def claim(self, data):
        chunk_id = data.draw(st.sampled_from(self._chunk_ids()))
        self._claim(chunk_id, next(self.owners))

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), closes=st.booleans())
    def commit(self, data, closes):
        """closes=False: the runner dies between its commit and its close (the sweeper or a resume closes it)."""
        self._commit(data.draw(st.sampled_from(sorted(self.runs))), closes=closes)

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), closes=st.booleans())
    def fail(self, data, closes):
        owner = data.draw(st.sampled_from(sorted(self.runs)))
        chunk, token = self.runs.pop(owner)
        # As chunk_run on an error no retry can get past (private steps of the one runner, composed here).
        chunk_steps._record_failure(chunk, token, RuntimeError("boom"))
        if closes:
            broadcast_close_if_done(broadcast_id=chunk.broadcast_id)

    @precondition(lambda self: self.broadcasts)
    @rule(data=st.data())
    def lease_expires(self, data):
        chunk_id = data.draw(st.sampled_from(self._chunk_ids()))
        BroadcastChunk.objects.filter(pk=chunk_id, status=ChunkStatus.RUNNING).update(
            leased_until=Now() - timedelta(seconds=1)
        )

    @rule()
    def sweep(self):
        broadcasts_sweep()

    @precondition(lambda self: self.broadcasts)
    @rule(data=st.data())
    def resume(self, data):
        broadcast_resume(broadcast=Broadcast.objects.get(pk=data.draw(st.sampled_from(self.broadcasts))))

    @precondition(lambda self: self.broadcasts)
    @rule(data=st.data())
    def close(self, data):
        broadcast_close_if_done(broadcast_id=data.draw(st.sampled_from(self.broadcasts)))

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), other=st.sampled_from(["resume", "sweep", "close", "claim", "expire_then_claim"]))
    def commit_while_another_acts(self, data, other):
        """A commit held open on its own connection after its insert while `other` acts on a second one."""
        owner = data.draw(st.sampled_from(sorted(self.runs)))
        chunk, token = self.runs[owner]
        if not BroadcastChunk.objects.filter(pk=chunk.pk, status=ChunkStatus.RUNNING, claim_token=token).exists():
            self._commit(owner)  # its claim was taken over: nothing to hold
            return
        if other == "expire_then_claim":
            BroadcastChunk.objects.filter(pk=chunk.pk).update(leased_until=Now() - timedelta(seconds=1))
        actions = {
            "resume": lambda: broadcast_resume(broadcast=Broadcast.objects.get(pk=chunk.broadcast_id)),
            "sweep": broadcasts_sweep,
            "close": lambda: broadcast_close_if_done(broadcast_id=chunk.broadcast_id),
            "claim": lambda: self._claim(chunk.pk, next(self.owners)),
            "expire_then_claim": lambda: self._claim(chunk.pk, next(self.owners)),
        }
        when = f"NEW.id = {chunk.pk} AND OLD.status = 'running' AND NEW.status = 'succeeded'"
        with gate(table="chat_broadcastchunk", event="UPDATE", when=when) as held:
            committing = in_thread(lambda: self._commit(owner))
            held.wait_until_held()
            acting = in_thread(actions[other])
            _until_done_or_waiting(acting)
            held.release()
            committing.result()
            acting.result()

    @precondition(lambda self: self._with_a_failed_chunk())
    @rule(data=st.data())
    def resume_while_a_close_waits(self, data):
        """Resume held after it made a failed chunk pending, uncommitted, while a close (a last chunk's) starts."""
        failed = self._with_a_failed_chunk()
        broadcast_id = data.draw(st.sampled_from(sorted(failed)))
        when = f"OLD.broadcast_id = {broadcast_id} AND OLD.status = 'failed' AND NEW.status = 'pending'"
        with gate(table="chat_broadcastchunk", event="UPDATE", when=when) as held:
            resuming = in_thread(lambda: broadcast_resume(broadcast=Broadcast.objects.get(pk=broadcast_id)))
            held.wait_until_held()
            closing = in_thread(lambda: broadcast_close_if_done(broadcast_id=broadcast_id))
            _until_done_or_waiting(closing)
            held.release()
            resuming.result()
            closing.result()

    # --- steps shared by the rules ------------------------------------------------------------

    def _with_a_failed_chunk(self) -> list[int]:
        return sorted(
            set(
                BroadcastChunk.objects.filter(broadcast_id__in=self.broadcasts, status=ChunkStatus.FAILED).values_list(
                    "broadcast_id", flat=True
                )
            )
        )

    def _chunk_ids(self) -> list[int]:
        return list(
            BroadcastChunk.objects.filter(broadcast_id__in=self.broadcasts).order_by("pk").values_list("pk", flat=True)
        )

    def _claim(self, chunk_id: int, owner: str):
        claim = chunk_steps._claim(chunk_id=chunk_id, owner=owner)
        if isinstance(claim, tuple):
            self.runs[owner] = claim
        return claim

    def _commit(self, owner: str, *, closes: bool = True):
        chunk, token = self.runs.pop(owner)
        try:
            chunk_steps._insert_and_commit(chunk, token)
        except chunk_steps.ClaimTakenOver:
            return
        if closes:
            broadcast_close_if_done(broadcast_id=chunk.broadcast_id)

    # --- what must hold after every step ------------------------------------------------------

    @invariant()
    def the_status_each_broadcast_shows_is_true_and_its_counts_are_the_sums_of_its_chunks(self):
        for broadcast in Broadcast.objects.filter(pk__in=self.broadcasts):
            states = list(broadcast.chunks.values_list("status", flat=True))
            open_chunks = [state for state in states if state in (ChunkStatus.PENDING, ChunkStatus.RUNNING)]
            if broadcast.status in (BroadcastStatus.SUCCEEDED, BroadcastStatus.FAILED):
                assert not open_chunks, (broadcast.pk, broadcast.status, states)
                sums = broadcast.chunks.aggregate(
                    chats=Sum("chat_count"), created=Sum("created_count"), skipped=Sum("skipped_count")
                )
                assert (broadcast.chat_count, broadcast.created_count, broadcast.skipped_count) == (
                    sums["chats"] or 0,
                    sums["created"] or 0,
                    sums["skipped"] or 0,
                )
                assert broadcast.finished_at is not None and broadcast.finished_at >= broadcast.started_at
            if broadcast.status == BroadcastStatus.SUCCEEDED:
                assert set(states) <= {ChunkStatus.SUCCEEDED}
            if broadcast.status == BroadcastStatus.FAILED:
                assert ChunkStatus.FAILED in states
            if broadcast.status == BroadcastStatus.QUEUED:
                assert not broadcast.chunks.filter(claimed_at__isnull=False).exists()

    @invariant()
    def a_running_chunk_has_a_lease_and_a_read_floor(self):
        assert not BroadcastChunk.objects.filter(status=ChunkStatus.RUNNING, message_ids_above__isnull=True).exists()

    @invariant()
    def every_message_was_created_by_exactly_one_committed_chunk(self):
        created = BroadcastChunk.objects.filter(status=ChunkStatus.SUCCEEDED).aggregate(total=Sum("created_count"))
        assert Message.objects.count() == (created["total"] or 0)

    @invariant()
    def each_finish_is_logged_exactly_once(self):
        for broadcast in Broadcast.objects.filter(pk__in=self.broadcasts):
            finished = broadcast.status in (BroadcastStatus.SUCCEEDED, BroadcastStatus.FAILED)
            reopened = self.log.count({"broadcast.resumed"}, broadcast.pk)
            assert self.log.count(FINISH_EVENTS, broadcast.pk) == reopened + int(finished), broadcast.pk


def _until_done_or_waiting(thread, timeout: float = 30) -> None:
    """Until the thread has finished, or it waits for a row lock (behind the held commit)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.thread.is_alive():
            return
        try:
            wait_for_lock_waits(count=1, timeout=0.05)
            return
        except AssertionError:
            continue
    raise AssertionError("the other actor neither finished nor waited")


def test_the_broadcast_state_machine_keeps_every_claim_true(settings_override):
    run_state_machine_as_test(
        BroadcastMachine,
        settings=settings(
            max_examples=20,
            stateful_step_count=14,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            derandomize=False,
        ),
    )


@pytest.fixture
def settings_override(settings, make_image):
    """Chats and images once; a broker that takes messages and runs nothing (kombu's in-memory transport)."""
    settings.BROADCAST_CHUNK_MAX_ATTEMPTS = 3
    settings.BROADCAST_STALL_SECONDS = 0
    settings.CELERY_BROKER_URL = "memory://"
    users = get_user_model().objects.bulk_create(get_user_model()(username=f"machine{n}") for n in range(CHATS))
    Chat.objects.bulk_create(Chat(user=user) for user in users if not Chat.objects.filter(user=user).exists())
    BroadcastMachine.image_ids = [make_image().pk for _ in range(IMAGES)]
    BroadcastMachine.log = EventLog()
    broadcasts_logger = logging.getLogger("chat.broadcasts")
    broadcasts_logger.addHandler(BroadcastMachine.log)
    previous_level = broadcasts_logger.level
    broadcasts_logger.setLevel(logging.INFO)
    try:
        with publishing_to(broker_url="memory://", queue=new_queue_name()):
            yield settings
    finally:
        broadcasts_logger.removeHandler(BroadcastMachine.log)
        broadcasts_logger.setLevel(previous_level)
