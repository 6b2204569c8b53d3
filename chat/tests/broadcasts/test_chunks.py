"""Chunks: claimed under a lease, committed once, the broadcast closed once; recovery by sweep and resume."""

import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from chat.broadcasts import chunks as broadcast_chunks
from chat.broadcasts.chunks import broadcast_close_if_done, chunk_run
from chat.broadcasts.sending import broadcast_create, broadcast_resume
from chat.broadcasts.sweeper import broadcasts_sweep
from chat.models import Broadcast, BroadcastChunk, BroadcastStatus, ChunkStatus, Message


@pytest.fixture
def six_chats_two_images(make_user, make_image):
    chats = [make_user().chat for _ in range(6)]
    images = [make_image(), make_image()]
    return chats, images


def _planned(images, chunk_messages=4):
    """A recorded broadcast of the images in chunks of 2 chats (4 messages), nothing run yet."""
    return broadcast_create(image_ids=[image.pk for image in images], chunk_messages=chunk_messages)


def _chunk_ids(broadcast):
    return list(broadcast.chunks.order_by("after_chat_id").values_list("pk", flat=True))


@pytest.mark.django_db
def test_the_last_chunk_closes_the_broadcast_with_the_totals_of_its_chunks(six_chats_two_images):
    _chats, images = six_chats_two_images
    broadcast = _planned(images)
    first, second, third = _chunk_ids(broadcast)
    assert chunk_run(chunk_id=first, owner="a").closed is None
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.RUNNING
    assert chunk_run(chunk_id=third, owner="b").closed is None
    closed = chunk_run(chunk_id=second, owner="c").closed
    assert closed is not None and closed.status == BroadcastStatus.SUCCEEDED
    assert (closed.chat_count, closed.created_count, closed.skipped_count) == (6, 12, 0)
    assert Message.objects.count() == 12
    assert broadcast_close_if_done(broadcast_id=broadcast.pk) is None  # closed exactly once


@pytest.mark.django_db
def test_a_chunk_run_again_creates_and_counts_nothing_twice(six_chats_two_images):
    _chats, images = six_chats_two_images
    broadcast = _planned(images)
    chunk_id = _chunk_ids(broadcast)[0]
    assert chunk_run(chunk_id=chunk_id, owner="task-1").created == 4
    again = chunk_run(chunk_id=chunk_id, owner="task-2")
    assert (again.outcome, again.created) == ("finished", 0)
    assert BroadcastChunk.objects.get(pk=chunk_id).created_count == 4 and Message.objects.count() == 4


@pytest.mark.django_db
def test_a_chunk_leased_by_another_runner_is_left_to_it_until_its_lease_runs_out(six_chats_two_images):
    _chats, images = six_chats_two_images
    chunk_id = _chunk_ids(_planned(images))[0]
    BroadcastChunk.objects.filter(pk=chunk_id).update(
        status=ChunkStatus.RUNNING,
        lease_owner="someone",
        attempts=1,
        leased_until=timezone.now() + timedelta(seconds=30),
    )
    leased = chunk_run(chunk_id=chunk_id, owner="me")
    assert leased.outcome == "leased" and 25 < leased.lease_seconds_left <= 30
    assert not Message.objects.exists()

    BroadcastChunk.objects.filter(pk=chunk_id).update(leased_until=timezone.now() - timedelta(seconds=1))
    taken_over = chunk_run(chunk_id=chunk_id, owner="me")
    assert (taken_over.outcome, taken_over.created) == ("ran", 4)
    chunk = BroadcastChunk.objects.get(pk=chunk_id)
    assert (chunk.attempts, chunk.lease_owner, chunk.status) == (2, "me", ChunkStatus.SUCCEEDED)


@pytest.mark.django_db
def test_the_same_owner_takes_its_chunk_back_at_once_after_a_redelivery(six_chats_two_images):
    _chats, images = six_chats_two_images
    chunk_id = _chunk_ids(_planned(images))[0]
    # As a worker process killed mid-chunk leaves it: running, lease live, owner = the task id.
    BroadcastChunk.objects.filter(pk=chunk_id).update(
        status=ChunkStatus.RUNNING,
        lease_owner="task-7",
        attempts=1,
        leased_until=timezone.now() + timedelta(seconds=60),
    )
    assert chunk_run(chunk_id=chunk_id, owner="task-7").outcome == "ran"


@pytest.mark.django_db
def test_a_chunk_out_of_attempts_fails_and_the_broadcast_closes_failed(six_chats_two_images, settings):
    settings.BROADCAST_CHUNK_MAX_ATTEMPTS = 2
    _chats, images = six_chats_two_images
    broadcast = _planned(images, chunk_messages=12)
    [chunk_id] = _chunk_ids(broadcast)
    BroadcastChunk.objects.filter(pk=chunk_id).update(attempts=2)
    result = chunk_run(chunk_id=chunk_id, owner="x")
    assert result.outcome == "not_runnable" and result.closed.status == BroadcastStatus.FAILED
    assert "gave up after 2 attempts" in result.closed.error


@pytest.mark.django_db(transaction=True)
def test_one_chunk_run_twice_at_the_same_moment_commits_once_and_counts_right(six_chats_two_images):
    _chats, images = six_chats_two_images
    broadcast = _planned(images, chunk_messages=12)
    [chunk_id] = _chunk_ids(broadcast)
    start = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            start.wait()
            # The same owner: as a message Redis delivered twice, which both claims let through.
            results.append(chunk_run(chunk_id=chunk_id, owner="duplicated-task"))
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(result.outcome for result in results) in (["finished", "ran"], ["leased", "ran"])
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.created_count, broadcast.skipped_count) == (BroadcastStatus.SUCCEEDED, 12, 0)
    assert Message.objects.count() == 12


@pytest.mark.django_db
def test_a_stale_claim_cannot_commit_its_chunk(six_chats_two_images, monkeypatch):
    """A runner whose lease ran out and was taken over: its inserts roll back, the new owner's count stands."""
    _chats, images = six_chats_two_images
    chunk_id = _chunk_ids(_planned(images))[0]
    original_insert = broadcast_chunks.insert_missing_messages

    def insert_then_lose_the_claim(**kwargs):
        created = original_insert(**kwargs)
        # Another runner claims the chunk while this one is inserting (a fault injected between two real steps).
        BroadcastChunk.objects.filter(pk=chunk_id).update(claim_token=None)
        return created

    monkeypatch.setattr(broadcast_chunks, "insert_missing_messages", insert_then_lose_the_claim)
    assert chunk_run(chunk_id=chunk_id, owner="slow").outcome == "finished"
    assert not Message.objects.exists()
    assert BroadcastChunk.objects.get(pk=chunk_id).created_count == 0


@pytest.mark.django_db
def test_resume_finishes_what_a_crashed_in_process_run_left(six_chats_two_images):
    _chats, images = six_chats_two_images
    broadcast = _planned(images)
    first, second, _third = _chunk_ids(broadcast)
    chunk_run(chunk_id=first, owner="crashed-run")
    # The crashed run had claimed the second chunk: running, its lease ran out.
    BroadcastChunk.objects.filter(pk=second).update(
        status=ChunkStatus.RUNNING,
        attempts=1,
        lease_owner="crashed-run",
        leased_until=timezone.now() - timedelta(seconds=1),
    )
    resumed = broadcast_resume(broadcast=broadcast).broadcast
    assert (resumed.status, resumed.created_count, resumed.chat_count) == (BroadcastStatus.SUCCEEDED, 12, 6)
    assert Message.objects.count() == 12


@pytest.mark.django_db
def test_resume_broadcasts_command_resumes_a_failed_broadcast_and_says_so(six_chats_two_images, capsys):
    _chats, images = six_chats_two_images
    broadcast = _planned(images, chunk_messages=12)
    Broadcast.objects.filter(pk=broadcast.pk).update(
        status=BroadcastStatus.FAILED, error="Interrupted", finished_at=timezone.now()
    )
    call_command("resume_broadcasts", "--id", str(broadcast.pk))
    assert f"Broadcast #{broadcast.pk}: succeeded, 12 messages created" in capsys.readouterr().out
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SUCCEEDED and broadcast.error == ""
    with pytest.raises(CommandError, match="There is no broadcast #999999"):
        call_command("resume_broadcasts", "--id", "999999")


@pytest.mark.django_db
def test_the_sweeper_releases_expired_leases_and_runs_them_again(six_chats_two_images, settings):
    """Without a broker Celery runs tasks eagerly, so the sweep's re-queued chunks run right here."""
    settings.CELERY_BROKER_URL = ""
    _chats, images = six_chats_two_images
    broadcast = _planned(images)
    for chunk_id in _chunk_ids(broadcast)[:2]:
        BroadcastChunk.objects.filter(pk=chunk_id).update(
            status=ChunkStatus.RUNNING,
            attempts=1,
            lease_owner="dead",
            leased_until=timezone.now() - timedelta(seconds=1),
        )
    report = broadcasts_sweep()
    assert report.expired_leases == 2 and report.requeued_broadcasts == [broadcast.pk]
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SUCCEEDED and broadcast.created_count == 12


@pytest.mark.django_db
def test_the_sweeper_leaves_a_moving_broadcast_alone_and_requeues_a_stalled_one(six_chats_two_images, settings):
    settings.CELERY_BROKER_URL = ""
    settings.BROADCAST_STALL_SECONDS = 60
    _chats, images = six_chats_two_images
    broadcast = _planned(images)
    assert broadcasts_sweep().requeued_broadcasts == []  # just created: not stalled
    Broadcast.objects.filter(pk=broadcast.pk).update(started_at=timezone.now() - timedelta(seconds=61))
    assert broadcasts_sweep().requeued_broadcasts == [broadcast.pk]
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SUCCEEDED and Message.objects.count() == 12


@pytest.mark.django_db
def test_the_sweeper_closes_a_broadcast_whose_last_runner_died_before_closing_it(six_chats_two_images):
    _chats, images = six_chats_two_images
    broadcast = _planned(images, chunk_messages=12)
    [chunk_id] = _chunk_ids(broadcast)
    chunk_run(chunk_id=chunk_id, owner="x")
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.RUNNING, finished_at=None)
    assert broadcasts_sweep().closed_broadcasts == [broadcast.pk]


@pytest.mark.django_db(transaction=True)
def test_a_chunk_gets_message_ids_above_every_id_another_connection_handed_out_meanwhile(make_user, make_image):
    """A recipient's read watermark is a message id: a later chunk on a long-lived connection must not reuse old ids."""
    chats = [make_user().chat for _ in range(2)]
    image, later_image = make_image(), make_image()
    first = broadcast_create(image_ids=[image.pk], chunk_messages=1)
    chunk_run(chunk_id=_chunk_ids(first)[0], owner="long-lived connection")  # takes a block of cached ids
    written_meanwhile = []

    def another_connection():
        try:
            written_meanwhile.append(Message.objects.create(chat=chats[1], image=later_image, text="meanwhile").pk)
        finally:
            connection.close()

    thread = threading.Thread(target=another_connection)
    thread.start()
    thread.join(timeout=30)
    second = broadcast_create(image_ids=[later_image.pk], chunk_messages=1)
    chunk_run(chunk_id=_chunk_ids(second)[0], owner="long-lived connection")
    [new_id] = Message.objects.filter(chat=chats[0], image=later_image).values_list("pk", flat=True)
    assert new_id > written_meanwhile[0]
