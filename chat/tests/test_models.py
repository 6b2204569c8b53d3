import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import IntegrityError, transaction

from chat.models import Chat, Image, ImageStatus, Message

pytestmark = pytest.mark.django_db


def test_creating_a_user_gives_it_exactly_one_chat(make_user):
    user = make_user()
    assert Chat.objects.filter(user=user).count() == 1


def test_createsuperuser_gets_a_chat_too(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "pw-for-tests-only")
    call_command("createsuperuser", interactive=False, username="boss", email="boss@example.com")
    assert Chat.objects.filter(user__username="boss").exists()


def test_database_refuses_a_second_chat_for_the_same_user(make_user):
    user = make_user()
    with pytest.raises(IntegrityError), transaction.atomic():
        Chat.objects.create(user=user)


def test_database_refuses_two_messages_with_the_same_image_in_one_chat(make_user, make_image):
    chat = make_user().chat
    image = make_image()
    Message.objects.create(chat=chat, image=image, text="first")
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(chat=chat, image=image, text="again")


def test_message_keeps_its_text_when_its_image_is_deleted(make_user, make_image):
    chat = make_user().chat
    image = make_image()
    message = Message.objects.create(chat=chat, image=image, text="kept")
    image.delete()
    message.refresh_from_db()
    assert message.image is None and message.text == "kept"


def test_message_gets_its_created_time_from_the_database(make_user):
    message = Message.objects.create(chat=make_user().chat, text="hello")
    message.refresh_from_db()
    assert message.created_at is not None


def test_database_refuses_a_stored_image_without_a_file(make_image):
    with pytest.raises(IntegrityError), transaction.atomic():
        make_image(status=ImageStatus.STORED)


def test_source_url_is_unique(make_image):
    make_image(source_url="https://photos.example/same.jpeg")
    with pytest.raises(IntegrityError), transaction.atomic():
        Image.objects.create(photo_id=99, source_url="https://photos.example/same.jpeg")


def test_deleting_a_user_deletes_its_chat_and_messages(make_user):
    user = make_user()
    Message.objects.create(chat=user.chat, text="bye")
    get_user_model().objects.filter(pk=user.pk).delete()
    assert not Chat.objects.exists() and not Message.objects.exists()


def test_message_ids_come_from_a_cached_sequence_so_parallel_broadcasts_do_not_contend_on_it():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT cache_size FROM pg_sequences WHERE sequencename = %s", ["chat_message_id_seq"])
        assert cursor.fetchone() == (1000,)
