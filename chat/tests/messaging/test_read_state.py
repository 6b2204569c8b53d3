"""chat_mark_read: one watermark per chat, forward only, never past the chat's own messages; broadcasts leave it alone."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.broadcasts.sending import broadcast_send
from chat.messaging.read_state import chat_mark_read
from chat.messaging.selectors import chat_counts
from chat.models import Chat, Message

pytestmark = pytest.mark.django_db


def _messages(chat, images):
    return [Message.objects.create(chat=chat, image=image, text="t") for image in images]


def test_the_watermark_stops_at_the_newest_message_at_or_below_the_given_id(make_user, make_image):
    chat = make_user().chat
    first, second = _messages(chat, [make_image(), make_image()])
    assert chat_mark_read(chat=chat, up_to_message_id=second.pk + 10_000) == second.pk
    later = _messages(chat, [make_image()])[0]
    # A message that arrives afterwards is unread, though the call named a larger id.
    assert later.pk < second.pk + 10_000
    assert chat_counts(chat=chat).unread_count == 1
    assert first.pk < second.pk


def test_an_id_below_every_message_marks_nothing(make_user, make_image):
    chat = make_user().chat
    (message,) = _messages(chat, [make_image()])
    assert chat_mark_read(chat=chat, up_to_message_id=message.pk - 1) == 0
    assert chat_counts(chat=chat).unread_count == 1


def test_the_watermark_only_moves_forward(make_user, make_image):
    chat = make_user().chat
    first, second = _messages(chat, [make_image(), make_image()])
    chat_mark_read(chat=chat, up_to_message_id=second.pk)
    assert chat_mark_read(chat=chat, up_to_message_id=first.pk) == second.pk


def test_a_broadcast_writes_nothing_to_the_chats(make_user, make_image):
    chats = [make_user().chat for _ in range(3)]
    chat_mark_read(chat=chats[0], up_to_message_id=1)
    images = [make_image(), make_image()]
    before = list(Chat.objects.order_by("pk").values_list("pk", "last_read_message_id"))
    with CaptureQueriesContext(connection) as captured:
        broadcast = broadcast_send(image_ids=[image.pk for image in images]).broadcast
    assert broadcast.created_count == 6
    writes = [
        query["sql"]
        for query in captured.captured_queries
        if query["sql"].lstrip().upper().startswith(("UPDATE", "INSERT"))
    ]
    assert writes and not any('"chat_chat"' in sql.split("SELECT")[0] for sql in writes), writes
    assert list(Chat.objects.order_by("pk").values_list("pk", "last_read_message_id")) == before
    assert all(chat_counts(chat=chat).unread_count == 2 for chat in chats)
