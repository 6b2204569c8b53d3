"""GET /api/v1/chat/messages/: newest first, keyset pages, a constant number of queries."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat.messaging.api.pagination import cursor_encode

pytestmark = pytest.mark.django_db

URL = "/api/v1/chat/messages/"


@pytest.fixture
def reader(make_user):
    return make_user(username="reader")


def _pages(client, **params):
    """Every page, following `next`; the ids per page."""
    pages, url, query = [], URL, params
    while url:
        body = client.get(url, query).json()
        pages.append([message["id"] for message in body["results"]])
        url, query = body["next"], None
    return pages


def test_messages_come_newest_first_in_pages_that_follow_the_cursor(reader, send, api_client_for):
    ids = [message.pk for _ in range(7) for message in send(reader.chat)]
    pages = _pages(api_client_for(reader), limit=3)
    assert pages == [ids[::-1][0:3], ids[::-1][3:6], ids[::-1][6:7]]


def test_a_message_carries_text_time_and_its_images_title_and_url(reader, stored_image, send, api_client_for):
    image = stored_image(title="Harbour at dusk")
    (message,) = send(reader.chat, image=image, text="Look at this")
    (item,) = api_client_for(reader).get(URL).json()["results"]
    assert item["id"] == message.pk and item["text"] == "Look at this"
    assert item["created_at"].startswith(str(message.created_at.year))
    assert item["image"] == {
        "id": image.pk,
        "title": "Harbour at dusk",
        "url": f"http://testserver/api/v1/images/{image.pk}/file",
        "renditions": [],
    }


def test_the_next_link_keeps_the_limit_and_the_last_page_has_none(reader, send, api_client_for):
    for _ in range(3):
        send(reader.chat)
    body = api_client_for(reader).get(URL, {"limit": 2}).json()
    assert "limit=2" in body["next"] and "cursor=" in body["next"]
    assert api_client_for(reader).get(URL, {"limit": 3}).json()["next"] is None


@pytest.mark.parametrize("cursor", ["garbage", cursor_encode(0), "YmVmb3JlOi0x", "", "%%%", "YmVmb3JlOjEyYQ"])
def test_a_malformed_cursor_is_a_400_not_a_crash(reader, api_client_for, cursor):
    response = api_client_for(reader).get(URL, {"cursor": cursor})
    # An empty cursor means the first page.
    assert response.status_code == (200 if cursor == "" else 400)


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "٣"])
def test_a_limit_outside_1_to_100_is_a_400(reader, api_client_for, limit):
    response = api_client_for(reader).get(URL, {"limit": limit})
    assert response.status_code == 400 and "limit" in response.json()["detail"]


def test_an_empty_chat_has_an_empty_page(reader, api_client_for):
    assert api_client_for(reader).get(URL).json() == {"next": None, "results": []}


def _queries(client, url, **params):
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, params).status_code == 200
    return [query["sql"] for query in captured.captured_queries]


def test_a_page_costs_two_queries_with_a_token_whatever_the_chat_holds(reader, send, make_image, api_client_for):
    client = api_client_for(reader)
    send(reader.chat)
    few = _queries(client, URL, limit=20)
    for _ in range(60):
        send(reader.chat)
    many = _queries(client, URL, limit=20)
    # The token with its user and their chat, the page (images joined): no COUNT, no OFFSET.
    assert len(few) == len(many) == 2, many
    assert not any("COUNT(" in sql.upper() or "OFFSET" in sql.upper() for sql in many)
    # The chat as a range, ordered as the (chat_id, id) index is: with chat_id = X and ORDER BY id,
    # PostgreSQL walked the primary key through a million other messages (bench/http_recipients).
    chat_id = reader.chat.pk
    assert f'"chat_message"."chat_id" >= {chat_id} AND "chat_message"."chat_id" <= {chat_id}' in many[-1]
    assert re.search(r'ORDER BY "chat_message"."chat_id" DESC, (1|"chat_message"."id") DESC LIMIT 21$', many[-1]), many[
        -1
    ]
    cursor = client.get(URL, {"limit": 20}).json()["next"].split("cursor=")[1].split("&")[0]
    deeper = _queries(client, URL, limit=20, cursor=cursor)
    assert len(deeper) == 2 and "OFFSET" not in deeper[-1].upper()


def test_staff_naming_a_chat_cost_one_query_more(make_user, send, api_client_for):
    from django.contrib.auth.models import Permission

    staff = make_user(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_message"))
    client = api_client_for(staff)
    send(reader_chat := make_user().chat)
    client.get(URL, {"chat": reader_chat.pk})  # the permission cache fills on the first request
    assert len(_queries(client, URL, chat=reader_chat.pk)) <= 5


def test_the_image_url_the_api_builds_is_the_routes(reader, stored_image, send, api_client_for):
    from chat.messaging.api.serializers import IMAGE_FILE_PATH

    image = stored_image()
    send(reader.chat, image=image)
    (item,) = api_client_for(reader).get(URL).json()["results"]
    assert item["image"]["url"] == "http://testserver" + reverse("api:image_file", args=[image.pk])
    assert IMAGE_FILE_PATH.format(image.pk) == reverse("api:image_file", args=[image.pk])


def test_the_chat_summary_costs_two_queries_with_a_token(reader, send, api_client_for):
    client = api_client_for(reader)
    for _ in range(5):
        send(reader.chat)
    # The token, its user and their chat; the chat's counters less what is above the reader's floor
    # (chat/tests/messaging/test_chat_counts.py).
    assert len(_queries(client, reverse("api:chat"))) == 2
