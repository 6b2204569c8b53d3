"""GET /api/v1/chat/, POST /api/v1/chat/read and the /chat/ page."""

import re

import pytest
from django.urls import reverse

from chat.models import Chat

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader(make_user):
    return make_user(username="reader")


def test_the_chat_says_how_many_messages_it_has_and_how_many_are_unread(reader, send, api_client_for):
    messages = [message for _ in range(4) for message in send(reader.chat)]
    client = api_client_for(reader)
    assert client.get(reverse("api:chat")).json() == {
        "id": reader.chat.pk,
        "message_count": 4,
        "unread_count": 4,
        "last_read_message_id": 0,
    }
    response = client.post(reverse("api:chat_read"), {"up_to_id": messages[1].pk}, format="json")
    assert response.json() == {"last_read_message_id": messages[1].pk, "unread_count": 2}
    assert client.get(reverse("api:chat")).json()["unread_count"] == 2


def test_marking_read_never_moves_the_watermark_back(reader, send, api_client_for):
    first, second = send(reader.chat)[0], send(reader.chat)[0]
    client = api_client_for(reader)
    client.post(reverse("api:chat_read"), {"up_to_id": second.pk}, format="json")
    response = client.post(reverse("api:chat_read"), {"up_to_id": first.pk}, format="json")
    assert response.json() == {"last_read_message_id": second.pk, "unread_count": 0}


@pytest.mark.parametrize("body", [{}, {"up_to_id": 0}, {"up_to_id": "x"}, {"up_to_id": 2**63}, [1]])
def test_a_bad_read_request_is_a_400(reader, api_client_for, body):
    assert api_client_for(reader).post(reverse("api:chat_read"), body, format="json").status_code == 400


def test_marking_read_needs_a_csrf_token_with_a_session(reader, send):
    from rest_framework.test import APIClient

    (message,) = send(reader.chat)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(reader)
    assert client.post(reverse("api:chat_read"), {"up_to_id": message.pk}, format="json").status_code == 403
    assert Chat.objects.get(pk=reader.chat.pk).last_read_message_id == 0


def _log_in(client, user):
    response = client.post(reverse("login"), {"username": user.username, "password": "pw-for-tests-only"})
    assert response.status_code == 302 and response["Location"] == reverse("chat:chat_page")


def test_a_recipient_logs_in_reads_pages_of_messages_and_marks_them_read(client, reader, send, stored_image):
    image = stored_image(title="Sunset")
    messages = [send(reader.chat, image=image, text="with a picture")[0]]
    messages += [message for _ in range(24) for message in send(reader.chat)]
    _log_in(client, reader)
    first = client.get(reverse("chat:chat_page")).content.decode()
    assert '<span id="unread-count">25</span>' in first
    shown = [int(found) for found in re.findall(r'<li class="message" id="message-(\d+)"', first)]
    assert shown == [message.pk for message in messages[::-1][:20]]
    assert first.count('<span class="badge">New</span>') == 20

    older_url = re.search(r'<a href="([^"]+)" id="load-more"', first).group(1).replace("&amp;", "&")
    older = client.get(older_url).content.decode()
    shown_older = [int(found) for found in re.findall(r'<li class="message" id="message-(\d+)"', older)]
    assert shown_older == [message.pk for message in messages[::-1][20:]]
    assert f'src="/api/v1/images/{image.pk}/file"' in older and 'alt="Sunset"' in older
    assert 'id="load-more"' not in older

    response = client.post(reverse("chat:chat_read"), {"up_to_id": shown[0]})
    assert response.status_code == 302
    after = client.get(reverse("chat:chat_page")).content.decode()
    assert '<span id="unread-count">0</span>' in after and 'id="mark-read"' not in after
    # The picture the page shows comes through the session.
    assert client.get(f"/api/v1/images/{image.pk}/file").status_code == 200


def test_the_page_is_built_for_a_phone_and_for_assistive_technology(client, reader, send):
    send(reader.chat)
    client.force_login(reader)
    page = client.get(reverse("chat:chat_page")).content.decode()
    assert '<html lang="en">' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert '<main id="content">' in page and 'href="#content"' in page
    assert '<ol class="messages" aria-label="Messages, newest first">' in page


def test_logging_out_is_a_post_and_ends_the_session(client, reader):
    _log_in(client, reader)
    assert client.get(reverse("logout")).status_code == 405
    response = client.post(reverse("logout"))
    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert client.get(reverse("chat:chat_page")).status_code == 302


@pytest.mark.parametrize("up_to_id", ["", "abc", "0", "-3"])
def test_the_pages_read_form_refuses_a_bad_id(client, reader, up_to_id):
    client.force_login(reader)
    assert client.post(reverse("chat:chat_read"), {"up_to_id": up_to_id}).status_code == 400


def test_the_site_root_leads_to_the_chat(client):
    assert client.get("/")["Location"] == reverse("chat:chat_page")
