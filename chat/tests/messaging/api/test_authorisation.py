"""Who may read what, route by route: own chat only (404 for anyone else's), 401 or a login redirect, staff all."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from rest_framework.test import APIClient

from chat.models import Chat

pytestmark = pytest.mark.django_db

API_ROUTES = [
    ("get", "api:chat", None),
    ("get", "api:chat_messages", None),
    ("post", "api:chat_read", {"up_to_id": 1}),
]
PAGE_ROUTES = [("get", "chat:chat_page", None), ("post", "chat:chat_read", {"up_to_id": "1"})]


@pytest.fixture
def alice(make_user):
    return make_user(username="alice")


@pytest.fixture
def bob(make_user):
    return make_user(username="bob")


def _image_url(image):
    return reverse("api:image_file", args=[image.pk])


@pytest.mark.parametrize(("method", "name", "body"), API_ROUTES)
def test_anonymous_api_callers_get_401_with_a_token_challenge(method, name, body):
    response = getattr(APIClient(), method)(reverse(name), body, format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_anonymous_callers_get_401_for_an_image_file(alice, stored_image, send):
    image = stored_image()
    send(alice.chat, image=image)
    response = APIClient().get(_image_url(image))
    assert response.status_code == 401
    assert b"jpeg" not in response.content


@pytest.mark.parametrize(("method", "name", "body"), PAGE_ROUTES)
def test_anonymous_visitors_of_the_page_are_sent_to_the_login(client, method, name, body):
    response = getattr(client, method)(reverse(name), body or {})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


@pytest.mark.parametrize(("method", "name", "body"), API_ROUTES)
def test_an_inactive_users_token_is_refused(alice, api_client_for, method, name, body):
    client = api_client_for(alice)
    alice.is_active = False
    alice.save()
    assert getattr(client, method)(reverse(name), body, format="json").status_code == 401


def test_an_inactive_users_session_reads_nothing(client, alice, stored_image, send):
    image = stored_image()
    send(alice.chat, image=image)
    client.force_login(alice)
    alice.is_active = False
    alice.save()
    assert client.get(reverse("api:chat")).status_code == 401
    assert client.get(_image_url(image)).status_code == 401
    assert client.get(reverse("chat:chat_page")).status_code == 302


def test_an_inactive_user_cannot_log_in(client, alice):
    alice.is_active = False
    alice.save()
    response = client.post(reverse("login"), {"username": "alice", "password": "pw-for-tests-only"})
    assert response.status_code == 200 and "_auth_user_id" not in client.session


def test_a_user_never_sees_another_users_messages(alice, bob, send, api_client_for):
    (alice_message,) = send(alice.chat, text="for alice")
    (bob_message,) = send(bob.chat, text="for bob")
    listed = api_client_for(alice).get(reverse("api:chat_messages")).json()["results"]
    assert [message["id"] for message in listed] == [alice_message.pk]
    assert bob_message.pk not in {message["id"] for message in listed}


@pytest.mark.parametrize("name", ["api:chat", "api:chat_messages"])
def test_naming_another_users_chat_is_not_found_like_a_missing_one(alice, bob, api_client_for, name):
    client = api_client_for(alice)
    assert client.get(reverse(name), {"chat": bob.chat.pk}).status_code == 404
    assert client.get(reverse(name), {"chat": 999_999_999}).status_code == 404
    # Their own chat by id is fine.
    assert client.get(reverse(name), {"chat": alice.chat.pk}).status_code == 200


def test_the_page_of_another_users_chat_is_not_found(client, alice, bob):
    client.force_login(alice)
    assert client.get(reverse("chat:chat_page"), {"chat": bob.chat.pk}).status_code == 404
    assert client.get(reverse("chat:chat_page"), {"chat": "not-a-number"}).status_code == 404


def test_another_users_image_is_not_found_like_a_missing_one(alice, bob, stored_image, send, api_client_for):
    theirs = stored_image()
    send(bob.chat, image=theirs)
    client = api_client_for(alice)
    refused = client.get(_image_url(theirs))
    missing = client.get(reverse("api:image_file", args=[999_999_999]))
    assert refused.status_code == missing.status_code == 404
    assert refused.json() == missing.json()
    # The owner gets the bytes.
    response = api_client_for(bob).get(_image_url(theirs))
    assert response.status_code == 200 and b"".join(response.streaming_content).startswith(b"\xff\xd8")


def test_an_image_without_stored_bytes_is_not_found_even_in_the_own_chat(alice, make_image, send, api_client_for):
    pending, failed = make_image(status="pending"), make_image(status="failed", last_error="HTTP 500")
    send(alice.chat, image=pending)
    send(alice.chat, image=failed)
    client = api_client_for(alice)
    assert client.get(_image_url(pending)).status_code == 404
    assert client.get(_image_url(failed)).status_code == 404
    urls = [message["image"]["url"] for message in client.get(reverse("api:chat_messages")).json()["results"]]
    assert urls == [None, None]


def test_marking_read_with_another_users_message_id_changes_neither_chat(alice, bob, send, api_client_for):
    (alice_message,) = send(alice.chat)
    (bob_message,) = send(bob.chat)
    assert bob_message.pk > alice_message.pk
    response = api_client_for(alice).post(reverse("api:chat_read"), {"up_to_id": bob_message.pk}, format="json")
    # Alice's watermark stops at her own newest message; Bob's is untouched.
    assert response.json() == {"last_read_message_id": alice_message.pk, "unread_count": 0}
    assert Chat.objects.get(pk=bob.chat.pk).last_read_message_id == 0


def test_a_message_whose_image_was_deleted_keeps_its_text(client, alice, send, make_image, api_client_for):
    image = make_image(title="Gone soon")
    send(alice.chat, image=image, text="the text survives")
    image.delete()
    (message,) = api_client_for(alice).get(reverse("api:chat_messages")).json()["results"]
    assert message["text"] == "the text survives" and message["image"] is None
    client.force_login(alice)
    page = client.get(reverse("chat:chat_page")).content.decode()
    assert "the text survives" in page and "Gone soon" not in page


@pytest.fixture
def staff_reader(make_user):
    staff = make_user(username="reader", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_message", "view_image"]))
    return staff


def test_staff_who_may_view_messages_read_any_chat_and_image(
    staff_reader, bob, stored_image, send, api_client_for, client
):
    image = stored_image()
    (message,) = send(bob.chat, image=image, text="bob's")
    api = api_client_for(staff_reader)
    assert api.get(reverse("api:chat"), {"chat": bob.chat.pk}).json()["message_count"] == 1
    listed = api.get(reverse("api:chat_messages"), {"chat": bob.chat.pk}).json()["results"]
    assert [item["id"] for item in listed] == [message.pk]
    assert api.get(_image_url(image)).status_code == 200
    client.force_login(staff_reader)
    assert "bob&#x27;s" in client.get(reverse("chat:chat_page"), {"chat": bob.chat.pk}).content.decode()


def test_staff_reading_a_chat_do_not_mark_it_read(staff_reader, bob, send, api_client_for):
    (message,) = send(bob.chat)
    response = api_client_for(staff_reader).post(reverse("api:chat_read"), {"up_to_id": message.pk}, format="json")
    # Marking read always applies to the caller's own chat.
    assert response.status_code == 200
    assert Chat.objects.get(pk=bob.chat.pk).last_read_message_id == 0


def test_staff_without_the_view_permission_read_only_their_own_chat(make_user, bob, api_client_for):
    bare_staff = make_user(username="bare", is_staff=True)
    assert api_client_for(bare_staff).get(reverse("api:chat"), {"chat": bob.chat.pk}).status_code == 404


def test_the_schema_is_public_and_names_every_route(client):
    response = client.get(reverse("api:schema"), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = set(response.json()["paths"])
    assert paths == {
        "/api/v1/chat/",
        "/api/v1/chat/messages/",
        "/api/v1/chat/read",
        "/api/v1/images/{image_id}/file",
        "/api/v1/images/{image_id}/renditions/{file_name}",
    }


def test_renditions_follow_the_image_files_rule_and_are_cached_for_good(
    alice, bob, stored_image, send, api_client_for, s3_storage, client
):
    from django.core.files.base import ContentFile

    from chat.images.rendition_names import rendition_key
    from chat.models import ImageRendition

    theirs = stored_image()
    send(bob.chat, image=theirs)
    sha256 = "ab" * 32
    key = s3_storage.save(rendition_key(sha256), ContentFile(b"RIFF-webp-bytes"))
    ImageRendition.objects.create(image=theirs, width=4, height=3, file=key, byte_size=15, sha256=sha256)
    url = reverse("api:image_rendition", args=[theirs.pk, f"{sha256}.webp"])

    owner = api_client_for(bob).get(url)
    assert owner.status_code == 200 and b"".join(owner.streaming_content) == b"RIFF-webp-bytes"
    assert owner["Cache-Control"] == "private, max-age=31536000, immutable"
    assert owner["Vary"] == "Cookie, Authorization"
    # Someone else: the same 404 as a rendition that does not exist.
    refused = api_client_for(alice).get(url)
    missing = api_client_for(alice).get(reverse("api:image_rendition", args=[theirs.pk, f"{'cd' * 32}.webp"]))
    assert refused.status_code == missing.status_code == 404 and refused.json() == missing.json()
    assert api_client_for(bob).get(reverse("api:image_rendition", args=[theirs.pk, "nope.webp"])).status_code == 404
    assert client.get(url).status_code == 401
    # Staff's door: staff only.
    admin_url = reverse("chat:stored_image_rendition", args=[theirs.pk, f"{sha256}.webp"])
    client.force_login(bob)
    assert client.get(admin_url).status_code == 403
