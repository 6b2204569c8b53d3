import itertools

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from chat.models import Image, ImageStatus

_sequence = itertools.count(1)


@pytest.fixture
def make_user(db):
    def make(**fields):
        number = next(_sequence)
        fields.setdefault("username", f"user{number}")
        return get_user_model().objects.create_user(password="pw-for-tests-only", **fields)

    return make


@pytest.fixture
def make_image(db):
    def make(**fields):
        number = next(_sequence)
        fields.setdefault("photo_id", number)
        fields.setdefault("source_url", f"https://photos.example/{number}.jpeg")
        fields.setdefault("title", f"Photo {number}")
        fields.setdefault("description", f"Description of photo {number}")
        if "status" not in fields:
            # A stored copy by default (only those are broadcast); the key names no real object.
            fields.update(status=ImageStatus.STORED, file=f"images/test/{number}.jpeg", stored_at=timezone.now())
        return Image.objects.create(**fields)

    return make
