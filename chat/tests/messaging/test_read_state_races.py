"""A message a reader could not have seen never counts as read (issue 16, findings 1 and 2).

Two broadcasts write to the same chat on two real connections. A gate (a trigger waiting on an
advisory lock the test holds) keeps the first chunk's transaction open after its insert, so its
message has an id but is not committed, while the second chunk, claimed later, commits a higher
id. The reader reads and marks read in between, through the real page, API and service.
"""

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chat.broadcasts.chunks import chunk_run
from chat.broadcasts.sending import broadcast_create
from chat.messaging.read_state import chat_mark_read
from chat.messaging.selectors import chat_counts
from chat.models import Chat, Message
from chat.tests.race_gates import gate, in_thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def chunks_of_two_sends_at_once(settings):
    """Two sends' chunks in flight together, as any bound above one allows (chat/broadcasts/slots.py).

    The default bound, one chunk at a time, happens to close the window; the read floor does not rely on it.
    """
    settings.BROADCAST_MAX_CONCURRENT_CHUNKS = 4
    settings.BROADCAST_MAX_CONCURRENT_CHUNKS_PER_BROADCAST = 4


@pytest.fixture
def two_sends_in_flight(settings, make_user, make_image):
    """A chat with one old message; a slow send held open after its insert, and a fast send claimed after it."""
    # Two chunks at once: the bound on broadcast work (chat/broadcasts/slots.py) must let both run.
    settings.BROADCAST_MAX_CONCURRENT_CHUNKS = 2
    reader = make_user(username="reader")
    old_image, slow_image, fast_image = make_image(), make_image(), make_image()
    old = Message.objects.create(chat=reader.chat, image=old_image, text="seen long ago")
    slow = broadcast_create(image_ids=[slow_image.pk])
    fast = broadcast_create(image_ids=[fast_image.pk])
    with gate(table="chat_message", when=f"NEW.image_id = {slow_image.pk}") as held:
        slow_run = in_thread(lambda: chunk_run(chunk_id=slow.chunks.get().pk, owner="slow"))
        held.wait_until_held()
        # Claimed after the slow chunk's insert: its ids come from a later block, and it commits first.
        assert chunk_run(chunk_id=fast.chunks.get().pk, owner="fast").outcome == "ran"
        fast_message = Message.objects.get(image=fast_image)
        yield InFlight(reader=reader, old=old, fast_message=fast_message, slow_image=slow_image, gate=held)
        held.release()
        assert slow_run.result().outcome == "ran"


class InFlight:
    def __init__(self, *, reader, old, fast_message, slow_image, gate):
        self.reader, self.old, self.fast_message, self.slow_image, self.gate = (
            reader,
            old,
            fast_message,
            slow_image,
            gate,
        )

    def finish_slow_send(self):
        self.gate.release()
        return _wait_for_message(self.slow_image)


def _wait_for_message(image):
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = Message.objects.filter(image=image).first()
        if message is not None:
            return message
        time.sleep(0.02)
    raise AssertionError("the slow send did not commit")


def _unread(chat: Chat, message: Message) -> bool:
    chat.refresh_from_db()
    return message.pk > chat.last_read_message_id


def test_marking_read_up_to_a_newer_id_leaves_a_message_still_being_written_unread(two_sends_in_flight):
    sends = two_sends_in_flight
    chat = sends.reader.chat
    chat_mark_read(chat=chat, up_to_message_id=sends.fast_message.pk)
    slow_message = sends.finish_slow_send()
    assert slow_message.pk < sends.fast_message.pk  # the race: committed below a newer, already committed id
    assert _unread(chat, slow_message)


def test_the_pages_mark_all_as_read_form_never_covers_a_message_committed_after_the_page_was_shown(
    two_sends_in_flight, client
):
    sends = two_sends_in_flight
    client.force_login(sends.reader)
    page = client.get(reverse("chat:chat_page")).content.decode()
    [up_to_id] = re.findall(r'name="up_to_id" value="(\d+)"', page)
    slow_message = sends.finish_slow_send()
    assert slow_message.pk < sends.fast_message.pk
    # Posted after the slow message committed: the reader never saw it.
    assert client.post(reverse("chat:chat_read"), {"up_to_id": up_to_id}).status_code == 302
    assert _unread(sends.reader.chat, slow_message)


def test_the_apis_first_message_id_marked_read_later_never_covers_a_message_committed_meanwhile(two_sends_in_flight):
    sends = two_sends_in_flight
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=sends.reader).key}")
    shown = client.get(reverse("api:chat_messages")).json()["results"]
    slow_message = sends.finish_slow_send()
    response = client.post(reverse("api:chat_read"), {"up_to_id": shown[0]["id"]}, format="json")
    assert response.status_code == 200
    assert _unread(sends.reader.chat, slow_message)
    assert response.json()["unread_count"] == chat_counts(chat=sends.reader.chat).unread_count >= 1


def test_what_a_reader_is_shown_never_gains_a_message_below_its_top(two_sends_in_flight, client):
    """Keyset pages stay true: a message can only appear above what was shown, never inside it."""
    sends = two_sends_in_flight
    client.force_login(sends.reader)
    first_page = client.get(reverse("chat:chat_page")).content.decode()
    shown_ids = [int(found) for found in re.findall(r'name="up_to_id" value="(\d+)"', first_page)]
    slow_message = sends.finish_slow_send()
    assert shown_ids and slow_message.pk > max(shown_ids)


def test_the_message_admin_cannot_write_a_message_under_a_read_watermark(make_user, make_image, client):
    """Finding 2: the admin's connection keeps the rest of its id block; it may add no message, nor move one."""
    staff = get_user_model().objects.create_superuser("staff", password="pw-for-tests-only")
    reader = make_user(username="reader")
    client.force_login(staff)
    first_image, broadcast_image, later_image = make_image(), make_image(), make_image()
    add_url = reverse("admin:chat_message_add")
    client.post(add_url, {"chat": reader.chat.pk, "image": first_image.pk, "text": "by hand"})
    send = broadcast_create(image_ids=[broadcast_image.pk])
    # On a worker's connection, as in production: the web connection keeps its cached ids.
    in_thread(lambda: chunk_run(chunk_id=send.chunks.get().pk, owner="worker")).result()
    newest = Message.objects.filter(chat=reader.chat).order_by("-pk").first()
    chat_mark_read(chat=reader.chat, up_to_message_id=newest.pk)
    client.post(add_url, {"chat": reader.chat.pk, "image": later_image.pk, "text": "by hand, later"})
    for message in Message.objects.filter(chat=reader.chat, image=later_image):
        assert _unread(reader.chat, message)
    assert client.get(add_url).status_code == 403

    other = make_user(username="other")
    moved = Message.objects.get(chat=reader.chat, image=broadcast_image)
    client.post(
        reverse("admin:chat_message_change", args=[moved.pk]),
        {"chat": other.chat.pk, "image": broadcast_image.pk, "text": "moved"},
    )
    moved.refresh_from_db()
    assert moved.chat_id == reader.chat.pk


def test_a_run_whose_lease_ran_out_and_was_claimed_again_cannot_commit_below_a_watermark(
    settings, make_user, make_image
):
    """Verifies the commit is conditional on holding the latest claim: the old run's uncommitted ids roll back."""
    from datetime import timedelta

    from django.db.models.functions import Now

    from chat.broadcasts import chunks as chunk_steps
    from chat.models import BroadcastChunk

    settings.BROADCAST_MAX_CONCURRENT_CHUNKS = 3  # the old run, the new claim and the fast send at once
    reader = make_user(username="reader")
    slow_image, fast_image = make_image(), make_image()
    slow = broadcast_create(image_ids=[slow_image.pk])
    fast = broadcast_create(image_ids=[fast_image.pk])
    slow_chunk = slow.chunks.get()
    with gate(table="chat_message", when=f"NEW.image_id = {slow_image.pk}") as held:
        old_run = in_thread(lambda: chunk_run(chunk_id=slow_chunk.pk, owner="old"))
        held.wait_until_held()
        # Its lease runs out while it inserts; another runner claims the chunk (the claim, chunk_run's first step).
        BroadcastChunk.objects.filter(pk=slow_chunk.pk).update(leased_until=Now() - timedelta(seconds=1))
        new_claim = chunk_steps._claim(chunk_id=slow_chunk.pk, owner="new")
        assert isinstance(new_claim, tuple)
        chunk_run(chunk_id=fast.chunks.get().pk, owner="fast")
        newest = Message.objects.get(image=fast_image)
        chat_mark_read(chat=reader.chat, up_to_message_id=newest.pk)
        held.release()
        assert old_run.result().outcome == "finished"  # its claim was taken over: rolled back
    assert not Message.objects.filter(image=slow_image).exists()
    chunk_steps._insert_and_commit(*new_claim)
    assert _unread(reader.chat, Message.objects.get(image=slow_image))
