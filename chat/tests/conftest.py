import itertools

import pytest
from django.contrib.auth import get_user_model

from chat.models import Image

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
        return Image.objects.create(**fields)

    return make
