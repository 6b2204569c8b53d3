"""Images and messages in the admin show the stored copy (never the source), the state, and stay cheap to list."""

import hashlib
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat.images.ingestion import image_fetch_all
from chat.models import Image, ImageRendition, ImageStatus, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-for-tests-only"))
    return client


@pytest.fixture
def fetched(photo_api, s3_storage, settings):
    """Images fetched for real: 4 stored, one failed with its reason."""
    settings.IMAGE_SERVE_MODE = "stream"
    photo_api.listing = [1, 2, 3, 4, 5]
    photo_api.set_photo_fault(5, "not-image")
    image_fetch_all(api_url=photo_api.url, workers=2)
    return photo_api


def img_sources(html):
    """Sources of the pictures on the page, the admin's own icons left out."""
    return [source for source in re.findall(r'<img src="([^"]+)"', html) if not source.startswith("/static/")]


def narrowest_rendition_url(image) -> str:
    rendition = image.renditions.order_by("width").first()
    return reverse("chat:stored_image_rendition", args=[image.pk, f"{rendition.sha256}.webp"])


def test_the_image_list_shows_thumbnails_of_the_stored_copies_never_the_source(staff_client, fetched):
    html = staff_client.get(reverse("admin:chat_image_changelist")).content.decode()
    stored = Image.objects.filter(status=ImageStatus.STORED).order_by("-id")
    # The narrowest rendition, with the others in srcset: never the original for an 80 px box.
    assert img_sources(html) == [narrowest_rendition_url(image) for image in stored]
    assert html.count('sizes="80px"') == len(stored)
    assert not any("sample-photos" in source for source in img_sources(html))
    assert 'loading="lazy"' in html


def test_the_thumbnail_is_served_to_staff_and_refused_to_anonymous_visitors(staff_client, client, fetched):
    image = Image.objects.filter(status=ImageStatus.STORED).first()
    thumbnail = img_sources(staff_client.get(reverse("admin:chat_image_changelist")).content.decode())[0]
    response = staff_client.get(thumbnail)
    assert response.status_code == 200 and response["Cache-Control"] == "private, max-age=31536000, immutable"
    # The test photos share their pixels, so their renditions share one content-addressed object.
    sha256 = thumbnail.split("/")[-1].removesuffix(".webp")
    assert ImageRendition.objects.filter(sha256=sha256, image_id=int(thumbnail.split("/")[2])).exists()
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == sha256
    original = staff_client.get(reverse("chat:stored_image", args=[image.pk]))
    assert b"".join(original.streaming_content) == fetched.image_bytes(image.photo_id)
    staff_client.logout()
    refused = client.get(reverse("chat:stored_image", args=[image.pk]))
    assert refused.status_code == 403 and b"\xff\xd8" not in refused.content
    assert client.get(thumbnail).status_code == 403


def test_the_list_shows_each_state_and_the_last_error(staff_client, fetched):
    html = staff_client.get(reverse("admin:chat_image_changelist")).content.decode()
    assert html.count(">Stored</strong>") == 4
    assert ">Failed</strong>" in html and "not an image (Pillow cannot identify it)" in html


def test_the_list_filters_on_state(staff_client, fetched):
    url = reverse("admin:chat_image_changelist")
    failed = staff_client.get(url, {"status__exact": "failed"}).content.decode()
    assert len(re.findall(r'name="_selected_action"', failed)) == 1
    stored = staff_client.get(url, {"status__exact": "stored"}).content.decode()
    assert len(re.findall(r'name="_selected_action"', stored)) == 4


def test_the_detail_page_shows_the_metadata_the_stored_copy_and_the_source_link(staff_client, fetched):
    image = Image.objects.get(photo_id=2)
    html = staff_client.get(reverse("admin:chat_image_change", args=[image.pk])).content.decode()
    assert f'<a href="{fetched.image_url(2)}" rel="noopener noreferrer" target="_blank">' in html
    assert img_sources(html) == [narrowest_rendition_url(image)]
    # The preview links to the original.
    assert f'<a href="{reverse("chat:stored_image", args=[image.pk])}" target="_blank">' in html
    for value in (image.sha256, image.file.name, "image/jpeg", str(image.byte_size), str(image.width)):
        assert value in html


def test_a_source_url_that_is_not_http_is_never_made_a_link(staff_client, make_image):
    image = make_image(source_url="javascript:alert(1)")
    html = staff_client.get(reverse("admin:chat_image_change", args=[image.pk])).content.decode()
    assert 'href="javascript:' not in html


def test_messages_show_their_image_the_same_way(staff_client, fetched, make_user):
    image = Image.objects.filter(status=ImageStatus.STORED).first()
    message = Message.objects.create(chat=make_user().chat, image=image, text="hello")
    html = staff_client.get(reverse("admin:chat_message_changelist")).content.decode()
    assert img_sources(html) == [narrowest_rendition_url(image)]
    detail = staff_client.get(reverse("admin:chat_message_change", args=[message.pk])).content.decode()
    assert narrowest_rendition_url(image) in detail


@pytest.mark.parametrize("changelist", ["chat_image", "chat_message"])
def test_listing_stored_images_runs_a_constant_number_of_queries(
    staff_client, photo_api, s3_storage, make_user, changelist
):
    url = reverse(f"admin:{changelist}_changelist")

    def grow(photos):
        photo_api.listing = list(range(1, photos + 1))
        image_fetch_all(api_url=photo_api.url, workers=2)
        chat = make_user().chat
        Message.objects.bulk_create(
            [Message(chat=chat, image=image, text="x") for image in Image.objects.all()], ignore_conflicts=True
        )
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(url).status_code == 200
        return len(queries)

    assert grow(2) == grow(12)
