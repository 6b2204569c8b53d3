"""Actors racing on a broadcast's rows, each interleaving forced with a gate (chat/tests/race_gates.py)."""

from datetime import timedelta

import pytest
from django.db.models.functions import Now

from chat.broadcasts.chunks import broadcast_close_if_done, chunk_run
from chat.broadcasts.sending import broadcast_create, broadcast_resume
from chat.models import Broadcast, BroadcastChunk, BroadcastStatus, ChunkStatus, Message
from chat.tests.race_gates import gate, in_thread, wait_for_lock_waits

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def one_failed_one_finishing(make_user, make_image, settings):
    """A running broadcast of two chunks: the first failed, the second just committed and about to close."""
    settings.CELERY_BROKER_URL = ""
    for _ in range(4):
        make_user()
    broadcast = broadcast_create(image_ids=[make_image().pk], chunk_messages=2)
    first, second = broadcast.chunks.order_by("after_chat_id")
    BroadcastChunk.objects.filter(pk=first.pk).update(
        status=ChunkStatus.FAILED, attempts=1, finished_at=Now(), last_error="RuntimeError('boom')"
    )
    assert chunk_run(chunk_id=second.pk, owner="finishing", close=False).outcome == "ran"
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.RUNNING
    return broadcast


def test_resume_and_the_last_chunks_close_agree_whatever_the_interleaving(one_failed_one_finishing):
    """Finding 3: the close must not finish a broadcast whose failed chunk a resume has just made pending."""
    broadcast = one_failed_one_finishing
    with gate(
        table="chat_broadcastchunk", event="UPDATE", when="OLD.status = 'failed' AND NEW.status = 'pending'"
    ) as held:
        # Resume holds the broadcast's row lock and has reset the failed chunk, not yet committed.
        resume = in_thread(lambda: broadcast_resume(broadcast=Broadcast.objects.get(pk=broadcast.pk)))
        held.wait_until_held()
        # The finishing chunk's close starts now and waits behind the resume.
        close = in_thread(lambda: broadcast_close_if_done(broadcast_id=broadcast.pk))
        wait_for_lock_waits(count=1)
        held.release()
        close.result()
        outcome = resume.result()
    broadcast.refresh_from_db()
    pending = broadcast.chunks.filter(status__in=[ChunkStatus.PENDING, ChunkStatus.RUNNING]).count()
    assert not (broadcast.status in (BroadcastStatus.SUCCEEDED, BroadcastStatus.FAILED) and pending)
    # Without a broker the resume runs the chunk itself: the broadcast ends succeeded, every message there.
    assert (outcome.broadcast.status, broadcast.status) == (BroadcastStatus.SUCCEEDED, BroadcastStatus.SUCCEEDED)
    assert Message.objects.count() == 4 and broadcast.created_count == 4


def test_a_claim_waiting_behind_a_commit_never_takes_back_the_chunk_it_committed(make_user, make_image):
    """Found by the state machine: a re-claim of an expired lease, queued behind the commit's row lock.

    The claim's UPDATE must re-check the chunk's own state once it gets the row; a claim that read
    "running, lease expired" from a join's snapshot took a succeeded chunk back, and its later
    run counted the messages as skipped.
    """
    from chat.broadcasts import chunks as chunk_steps

    for _ in range(3):
        make_user()
    broadcast = broadcast_create(image_ids=[make_image().pk])
    chunk = broadcast.chunks.get()
    # The slow runner's claim (its private first step, as chunk_run takes it), then its lease runs out.
    claimed_chunk, token = chunk_steps._claim(chunk_id=chunk.pk, owner="slow")
    BroadcastChunk.objects.filter(pk=chunk.pk).update(leased_until=Now() - timedelta(seconds=1))
    when = f"NEW.id = {chunk.pk} AND OLD.status = 'running' AND NEW.status = 'succeeded'"
    with gate(table="chat_broadcastchunk", event="UPDATE", when=when) as held:
        committing = in_thread(lambda: chunk_steps._insert_and_commit(claimed_chunk, token))
        held.wait_until_held()
        reclaim = in_thread(lambda: chunk_run(chunk_id=chunk.pk, owner="second"))
        wait_for_lock_waits(count=1)
        held.release()
        assert committing.result() == 3
        assert reclaim.result().outcome == "finished"
    chunk.refresh_from_db()
    assert (chunk.status, chunk.created_count, chunk.lease_owner) == (ChunkStatus.SUCCEEDED, 3, "slow")
    assert Message.objects.count() == 3
