"""Chat.message_count and Chat.unread_count: kept exact by the database's triggers, read at a constant cost."""

import threading
import time

import psycopg2
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chat.broadcasts.sending import broadcast_send
from chat.messaging.read_state import chat_mark_read
from chat.messaging.selectors import chat_counts
from chat.models import Chat, Message


def truth(chat_id: int) -> tuple[int, int]:
    """The counts as COUNT(*) says them, for comparison."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(m.id), count(m.id) FILTER (WHERE m.id > c.last_read_message_id)
               FROM chat_chat AS c LEFT JOIN chat_message AS m ON m.chat_id = c.id WHERE c.id = %s GROUP BY c.id""",
            [chat_id],
        )
        return cursor.fetchone()


def counters(chat_id: int) -> tuple[int, int]:
    return tuple(Chat.objects.filter(pk=chat_id).values_list("message_count", "unread_count").get())


@pytest.mark.django_db
def test_every_writer_of_messages_and_of_the_watermark_keeps_the_counts_exact(make_user, make_image):
    chats = [make_user().chat for _ in range(3)]
    images = [make_image() for _ in range(4)]
    broadcast_send(image_ids=[image.pk for image in images[:3]])  # INSERT … SELECT, a statement per chunk
    Message.objects.create(chat=chats[0], image=images[3], text="one more")
    chat_mark_read(chat=chats[1], up_to_message_id=Message.objects.filter(chat=chats[1]).order_by("id")[1].pk)
    Message.objects.filter(chat=chats[2]).order_by("id").first().delete()
    moved = Message.objects.get(chat=chats[0], image=images[3])
    Message.objects.filter(pk=moved.pk).update(chat=chats[1])  # the admin can change a message's chat
    images[0].delete()  # SET NULL: an UPDATE that moves nothing
    for chat in chats:
        assert counters(chat.pk) == truth(chat.pk)
    assert [truth(chat.pk) for chat in chats] == [(3, 3), (4, 2), (2, 2)]
    assert chat_counts(chat=chats[1]).unread_count == 2


@pytest.mark.django_db
def test_the_summary_costs_two_queries_for_10_messages_as_for_1000(make_user, make_image):
    few, many = make_user(), make_user()
    images = [make_image() for _ in range(1000)]
    Message.objects.bulk_create([Message(chat=few.chat, image=image, text="t") for image in images[:10]])
    Message.objects.bulk_create([Message(chat=many.chat, image=image, text="t") for image in images])
    costs = {}
    for user in (few, many):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        with CaptureQueriesContext(connection) as captured:
            body = client.get("/api/v1/chat/").json()
        costs[user.pk] = [query["sql"] for query in captured.captured_queries]
        assert (body["message_count"], body["unread_count"]) == truth(user.chat.pk)
    # The token with its user and chat, then the counters less the messages above the reader's floor.
    assert len(costs[few.pk]) == len(costs[many.pk]) == 2, costs


def _wait_until_blocked(observer, pid: int) -> None:
    """Until the session pid waits for a lock: the interleaving is then the one the test names."""
    deadline = time.monotonic() + 10
    with observer.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
            if row and row[0] == "Lock":
                return
            time.sleep(0.01)
    raise AssertionError(f"session {pid} never waited for a lock")


def _connect():
    settings = connection.settings_dict
    raw = psycopg2.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        password=settings["PASSWORD"] or None,
    )
    raw.autocommit = False
    return raw


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["broadcast", "reader"])
def test_a_send_and_a_mark_read_racing_on_one_chat_leave_the_counts_exact(make_user, make_image, first):
    chat = make_user().chat
    old = [Message.objects.create(chat=chat, image=make_image(), text="t") for _ in range(3)]
    pending_image = make_image()
    # The racing message's id sits below the watermark the reader sets (as an id block taken
    # before a newer chunk committed gives it).
    racing_id, watermark = old[-1].pk + 1, old[-1].pk + 100
    Message.objects.create(chat=chat, image=make_image(), text="t", id=watermark)
    sender, reader, observer = _connect(), _connect(), _connect()
    observer.autocommit = True
    insert = (
        "INSERT INTO chat_message (id, chat_id, image_id, text) VALUES (%s, %s, %s, 't')",
        [racing_id, chat.pk, pending_image.pk],
    )
    mark = ("UPDATE chat_chat SET last_read_message_id = %s WHERE id = %s", [watermark, chat.pk])
    try:
        holder, waiter = (sender, reader) if first == "broadcast" else (reader, sender)
        holder_sql, waiter_sql = (insert, mark) if first == "broadcast" else (mark, insert)
        with holder.cursor() as cursor:
            cursor.execute(*holder_sql)  # holds the chat row's lock until it commits
        errors = []

        def run_waiter():
            try:
                with waiter.cursor() as cursor:
                    cursor.execute(*waiter_sql)
                waiter.commit()
            except Exception as error:  # reported by the main thread
                errors.append(error)

        thread = threading.Thread(target=run_waiter)
        thread.start()
        _wait_until_blocked(observer, waiter.get_backend_pid())
        holder.commit()
        thread.join(10)
        assert not thread.is_alive() and not errors, errors
    finally:
        for raw in (sender, reader, observer):
            raw.close()
    assert counters(chat.pk) == truth(chat.pk) == (5, 0)
