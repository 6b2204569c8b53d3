"""Recipients, their tokens and their messages, for the API and page tests."""

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chat.models import ImageStatus, Message

JPEG = b"\xff\xd8\xff\xe0 pretend jpeg bytes \xff\xd9"


@pytest.fixture
def api_client_for():
    """An APIClient that sends the user's token (created on first use)."""

    def make(user):
        client = APIClient()
        token, _created = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def send(make_image):
    """Put a message carrying a new (pending) image, or a given one, into each chat; the messages."""

    def make(*chats, image=None, text=None):
        image = image or make_image()
        return [Message.objects.create(chat=chat, image=image, text=text or image.description) for chat in chats]

    return make


@pytest.fixture
def stored_image(make_image, s3_storage, settings):
    """An image with its bytes in moto's S3 (served by streaming, so the tests can read them)."""
    settings.IMAGE_SERVE_MODE = "stream"
    counter = iter(range(1, 1000))

    def make(**fields):
        key = s3_storage.save(f"images/{next(counter)}-recipient.jpg", ContentFile(JPEG))
        return make_image(
            status=ImageStatus.STORED,
            file=key,
            content_type="image/jpeg",
            stored_at=timezone.now(),
            width=4,
            height=3,
            **fields,
        )

    return make
