import threading

import pytest
from django.db import connection

from chat.broadcasts.sending import (
    BroadcastError,
    NoImagesSelected,
    broadcast_create,
    broadcast_run,
    broadcast_send,
)
from chat.models import Broadcast, BroadcastStatus, ChunkStatus, ImageStatus, Message


@pytest.fixture
def two_chats_two_images(make_user, make_image):
    chats = [make_user().chat, make_user().chat]
    images = [make_image(), make_image()]
    return chats, images


def _pairs():
    return sorted(Message.objects.values_list("chat_id", "image_id"))


@pytest.mark.django_db
def test_two_chats_and_two_images_make_four_messages_with_the_image_descriptions(two_chats_two_images):
    chats, images = two_chats_two_images
    broadcast = broadcast_send(image_ids=[image.pk for image in images]).broadcast
    assert (broadcast.created_count, broadcast.skipped_count, broadcast.chat_count) == (4, 0, 2)
    assert _pairs() == sorted((chat.pk, image.pk) for chat in chats for image in images)
    assert set(Message.objects.values_list("text", flat=True)) == {image.description for image in images}


@pytest.mark.django_db
def test_a_pair_already_sent_is_skipped_and_a_second_send_creates_nothing(two_chats_two_images):
    chats, images = two_chats_two_images
    Message.objects.create(chat=chats[0], image=images[0], text="sent before")
    first = broadcast_send(image_ids=[image.pk for image in images]).broadcast
    assert (first.created_count, first.skipped_count) == (3, 1)
    again = broadcast_send(image_ids=[image.pk for image in images]).broadcast
    assert (again.created_count, again.skipped_count) == (0, 4)
    assert Message.objects.count() == 4


@pytest.mark.django_db
def test_tiny_chunks_cover_every_chat_exactly_once(make_user, make_image):
    chats = [make_user().chat for _ in range(7)]
    image = make_image()
    broadcast = broadcast_create(image_ids=[image.pk], chunk_messages=2)
    assert broadcast.chunk_count == 4
    assert list(broadcast.chunks.values_list("after_chat_id", "up_to_chat_id", "chat_count")) == [
        (0, chats[1].pk, 2),
        (chats[1].pk, chats[3].pk, 2),
        (chats[3].pk, chats[5].pk, 2),
        (chats[5].pk, chats[6].pk, 1),
    ]
    broadcast = broadcast_run(broadcast=broadcast)
    assert broadcast.chat_count == 7 and broadcast.created_count == 7
    assert _pairs() == [(chat.pk, image.pk) for chat in chats]


@pytest.mark.django_db
def test_image_without_description_sends_its_title(make_user, make_image):
    make_user()
    image = make_image(description="", title="Only a title")
    broadcast_send(image_ids=[image.pk])
    assert Message.objects.get().text == "Only a title"


@pytest.mark.django_db
def test_broadcast_is_recorded_with_sender_images_counts_and_duration(two_chats_two_images, make_user):
    _chats, images = two_chats_two_images
    staff = make_user(is_staff=True)
    broadcast = broadcast_send(image_ids=[images[0].pk, images[0].pk, 999_999], sent_by=staff).broadcast
    recorded = Broadcast.objects.get(pk=broadcast.pk)
    assert recorded.sent_by == staff
    assert list(recorded.images.all()) == [images[0]]
    assert recorded.status == BroadcastStatus.SUCCEEDED
    assert (recorded.image_count, recorded.chat_count, recorded.created_count, recorded.skipped_count) == (1, 3, 3, 0)
    assert recorded.finished_at >= recorded.started_at and recorded.duration_ms is not None


@pytest.mark.django_db
def test_no_existing_image_is_a_clear_error_and_records_nothing():
    with pytest.raises(NoImagesSelected):
        broadcast_send(image_ids=[123456])
    assert not Broadcast.objects.exists()


@pytest.mark.django_db
def test_a_failing_batch_marks_the_broadcast_failed_and_keeps_committed_batches(make_user, make_image):
    chats = [make_user().chat for _ in range(4)]
    image = make_image()
    broadcast = broadcast_create(image_ids=[image.pk], chunk_messages=2)
    # A real database error in the second chunk: a CHECK refuses its chats.
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE chat_message ADD CONSTRAINT refuse_late_chats CHECK (chat_id < {chats[2].pk})")
    with pytest.raises(BroadcastError):
        broadcast_run(broadcast=broadcast)
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.FAILED and "refuse_late_chats" in broadcast.error
    assert broadcast.created_count == 2 and _pairs() == [(chats[0].pk, image.pk), (chats[1].pk, image.pk)]
    assert list(broadcast.chunks.values_list("status", flat=True)) == [ChunkStatus.SUCCEEDED, ChunkStatus.FAILED]


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_broadcasts_never_duplicate_and_their_counts_add_up(make_user, make_image):
    chats = [make_user().chat for _ in range(300)]
    images = [make_image() for _ in range(3)]
    image_ids = [image.pk for image in images]
    results, errors = [], []
    start = threading.Barrier(2)

    def send():
        try:
            start.wait()
            results.append(broadcast_run(broadcast=broadcast_create(image_ids=image_ids, chunk_messages=150)))
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    total_pairs = len(chats) * len(images)
    assert Message.objects.count() == total_pairs
    assert sum(result.created_count for result in results) == total_pairs
    assert sum(result.skipped_count for result in results) == total_pairs


@pytest.mark.django_db(transaction=True)
def test_a_pair_committed_by_another_transaction_mid_insert_is_skipped_not_duplicated(make_user, make_image):
    chats = [make_user().chat for _ in range(3)]
    image = make_image()
    holding = threading.Event()
    release = threading.Event()

    def hold_an_uncommitted_message():
        from django.db import transaction

        try:
            with transaction.atomic():
                Message.objects.create(chat=chats[1], image=image, text="sent by someone else")
                holding.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    other = threading.Thread(target=hold_an_uncommitted_message)
    other.start()
    assert holding.wait(timeout=10)
    # The broadcast's insert waits on the other transaction's row; commit it a moment later.
    threading.Timer(0.5, release.set).start()
    broadcast = broadcast_run(broadcast=broadcast_create(image_ids=[image.pk]), workers=1)
    other.join(timeout=30)

    assert (broadcast.created_count, broadcast.skipped_count) == (2, 1)
    assert _pairs() == [(chat.pk, image.pk) for chat in chats]
    assert Message.objects.get(chat=chats[1]).text == "sent by someone else"


@pytest.mark.django_db
def test_only_images_with_a_stored_copy_are_sent_and_the_others_are_counted(make_user, make_image):
    make_user()
    stored = make_image()
    failed, pending = make_image(status=ImageStatus.FAILED), make_image(status=ImageStatus.PENDING)
    broadcast = broadcast_send(image_ids=[stored.pk, failed.pk, pending.pk]).broadcast
    assert (broadcast.image_count, broadcast.unsent_image_count, broadcast.created_count) == (1, 2, 1)
    assert list(Message.objects.values_list("image_id", flat=True)) == [stored.pk]


@pytest.mark.django_db
def test_selecting_only_images_without_a_stored_copy_is_a_clear_error(make_user, make_image):
    make_user()
    with pytest.raises(NoImagesSelected, match="None of the 2 selected images has a stored copy"):
        broadcast_send(image_ids=[make_image(status=ImageStatus.FAILED).pk, make_image(status=ImageStatus.PENDING).pk])
    assert not Broadcast.objects.exists() and not Message.objects.exists()


@pytest.mark.django_db
def test_a_send_with_no_chat_at_all_succeeds_with_nothing_to_do(make_image):
    broadcast = broadcast_send(image_ids=[make_image().pk]).broadcast
    assert (broadcast.status, broadcast.chunk_count, broadcast.created_count) == (BroadcastStatus.SUCCEEDED, 0, 0)
