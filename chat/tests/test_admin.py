import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat.broadcasts.admin import SEND_ACTION_LABEL
from chat.models import Broadcast, Chat, Image, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    django_user_model.objects.create_superuser("staff", "staff@example.com", "pw-for-tests-only")
    response = client.post(
        reverse("admin:login"),
        {"username": "staff", "password": "pw-for-tests-only", "next": reverse("admin:index")},
    )
    assert response.status_code == 302, "login through the admin form failed"
    return client


def test_staff_send_selected_images_to_all_chats_through_the_admin_pages(staff_client, make_user, make_image):
    users = [make_user(), make_user()]
    images = [make_image(), make_image(), make_image()]
    changelist = reverse("admin:chat_image_changelist")
    page = staff_client.get(changelist)
    assert SEND_ACTION_LABEL in page.content.decode()

    response = staff_client.post(
        changelist,
        {"action": "send_to_all_chats", "_selected_action": [images[0].pk, images[1].pk]},
        follow=True,
    )
    text = response.content.decode()
    # staff + 2 users = 3 chats, 2 images.
    assert "Created 6 messages for 3 chats (2 images); 0 already existed." in text
    assert Message.objects.count() == 6
    assert set(Message.objects.values_list("chat__user", flat=True)) >= {user.pk for user in users}

    again = staff_client.post(
        changelist, {"action": "send_to_all_chats", "_selected_action": [images[0].pk]}, follow=True
    )
    assert "Created 0 messages for 3 chats (1 images); 3 already existed." in again.content.decode()
    assert Broadcast.objects.count() == 2


def test_a_send_with_failed_and_pending_images_sends_the_stored_ones_and_says_how_many_were_left_out(
    staff_client, make_user, make_image
):
    make_user()
    stored, failed, pending = make_image(), make_image(status="failed"), make_image(status="pending")
    response = staff_client.post(
        reverse("admin:chat_image_changelist"),
        {"action": "send_to_all_chats", "_selected_action": [stored.pk, failed.pk, pending.pk]},
        follow=True,
    )
    text = response.content.decode()
    assert "2 of the selected images have no stored copy (failed or pending) and were not sent." in text
    assert "Created 2 messages for 2 chats (1 images); 0 already existed." in text
    assert set(Message.objects.values_list("image_id", flat=True)) == {stored.pk}


def test_staff_without_broadcast_permission_do_not_see_the_action(client, django_user_model, make_image):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw-for-tests-only", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_image"))
    client.force_login(viewer)
    make_image()
    page = client.get(reverse("admin:chat_image_changelist"))
    assert page.status_code == 200
    assert SEND_ACTION_LABEL not in page.content.decode()


def test_adding_a_second_chat_for_a_user_is_refused_with_a_form_error(staff_client, make_user):
    user = make_user()
    response = staff_client.post(reverse("admin:chat_chat_add"), {"user": user.pk})
    assert response.status_code == 200
    assert "Chat with this User already exists." in response.content.decode()
    assert Chat.objects.filter(user=user).count() == 1


def test_adding_a_chat_in_the_admin_works_for_a_user_without_one(staff_client, make_user):
    user = make_user()
    user.chat.delete()
    response = staff_client.post(reverse("admin:chat_chat_add"), {"user": user.pk})
    assert response.status_code == 302
    assert Chat.objects.filter(user=user).exists()


def test_broadcasts_are_read_only_in_the_admin(staff_client, make_user, make_image):
    make_user()
    image = make_image()
    staff_client.post(
        reverse("admin:chat_image_changelist"), {"action": "send_to_all_chats", "_selected_action": [image.pk]}
    )
    broadcast = Broadcast.objects.get()
    assert staff_client.get(reverse("admin:chat_broadcast_changelist")).status_code == 200
    assert staff_client.get(reverse("admin:chat_broadcast_add")).status_code == 403
    detail = staff_client.get(reverse("admin:chat_broadcast_change", args=[broadcast.pk]))
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert (
        staff_client.post(reverse("admin:chat_broadcast_delete", args=[broadcast.pk]), {"post": "yes"}).status_code
        == 403
    )


def _changelist_queries(client, url):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


def _seed(make_user, make_image, *, users, images):
    created_images = [make_image() for _ in range(images)]
    for _ in range(users):
        chat = make_user().chat
        for image in created_images:
            Message.objects.create(chat=chat, image=image, text=image.description)


@pytest.mark.parametrize("changelist", ["chat_image", "chat_chat", "chat_message", "chat_broadcast", "auth_user"])
def test_every_changelist_runs_a_constant_number_of_queries(staff_client, make_user, make_image, changelist):
    url = reverse(f"admin:{changelist}_changelist")
    _seed(make_user, make_image, users=2, images=2)
    staff_client.post(
        reverse("admin:chat_image_changelist"),
        {"action": "send_to_all_chats", "_selected_action": list(Image.objects.values_list("pk", flat=True))},
    )
    few = _changelist_queries(staff_client, url)
    _seed(make_user, make_image, users=12, images=4)
    staff_client.post(
        reverse("admin:chat_image_changelist"),
        {"action": "send_to_all_chats", "_selected_action": list(Image.objects.values_list("pk", flat=True))},
    )
    many = _changelist_queries(staff_client, url)
    assert few == many, f"{changelist}: {few} queries with few rows, {many} with more"


def test_message_changelist_searches_by_username_and_filters_by_image(staff_client, make_user, make_image):
    alice, bob = make_user(username="alice"), make_user(username="bob")
    first, second = make_image(description="sunset"), make_image(description="harbour")
    for chat in (alice.chat, bob.chat):
        for image in (first, second):
            Message.objects.create(chat=chat, image=image, text=image.description)
    url = reverse("admin:chat_message_changelist")
    by_user = staff_client.get(url, {"q": "alice"}).content.decode()
    assert len(re.findall(r'name="_selected_action"', by_user)) == 2
    by_image = staff_client.get(url, {"image__id__exact": first.pk}).content.decode()
    assert len(re.findall(r'name="_selected_action"', by_image)) == 2 and "harbour" not in by_image


def test_a_send_over_the_queue_threshold_says_it_is_queued(staff_client, settings, make_user, make_image):
    # A broker URL that is never contacted: the task is published on commit, after this test's transaction.
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/15"
    settings.BROADCAST_QUEUE_FROM_MESSAGES = 2
    make_user()
    image = make_image()
    response = staff_client.post(
        reverse("admin:chat_image_changelist"),
        {"action": "send_to_all_chats", "_selected_action": [image.pk]},
        follow=True,
    )
    broadcast = Broadcast.objects.get()
    assert f"Broadcast #{broadcast.pk} of 1 images is queued for the workers (1 chunks)" in response.content.decode()
    assert broadcast.status == "queued" and not Message.objects.exists()


def test_message_search_by_text_finds_messages_of_every_user(staff_client, make_user, make_image):
    alice, bob = make_user(username="alice"), make_user(username="bob")
    sunset = make_image(description="red sunset over the bay")
    for chat in (alice.chat, bob.chat):
        Message.objects.create(chat=chat, image=sunset, text=sunset.description)
        Message.objects.create(chat=chat, text="something else")
    page = staff_client.get(reverse("admin:chat_message_changelist"), {"q": "sunset"}).content.decode()
    assert len(re.findall(r'name="_selected_action"', page)) == 2


def test_broadcasts_list_shows_progress_and_resume_finishes_a_stalled_one(staff_client, make_user, make_image):
    from chat.broadcasts.chunks import chunk_run
    from chat.broadcasts.sending import broadcast_create

    for _ in range(3):
        make_user()
    broadcast = broadcast_create(image_ids=[make_image().pk], chunk_messages=2)  # 4 chats (staff too): 2 chunks
    first_chunk = broadcast.chunks.order_by("after_chat_id").first()
    chunk_run(chunk_id=first_chunk.pk, owner="a run that died after its first chunk")

    page = staff_client.get(reverse("admin:chat_broadcast_changelist")).content.decode()
    assert ">1/2<" in page and "(no runner holds a chunk)" in page
    detail = staff_client.get(reverse("admin:chat_broadcast_change", args=[broadcast.pk])).content.decode()
    assert "Chunks not done" in detail and "Pending" in detail

    response = staff_client.post(
        reverse("admin:chat_broadcast_changelist"),
        {"action": "resume", "_selected_action": [broadcast.pk]},
        follow=True,
    )
    assert f"Broadcast #{broadcast.pk} resumed: succeeded, 4 messages created." in response.content.decode()
    broadcast.refresh_from_db()
    assert broadcast.status == "succeeded" and Message.objects.count() == 4
