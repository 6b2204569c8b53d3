"""Renditions through the whole stack: Chromium at a phone's width gets WebP renditions via srcset, through nginx's X-Accel from S3.

One stack (nginx, Gunicorn, PostgreSQL, moto's S3 over HTTP), drawn pictures from the local
photo API, renditions made at ingest by fetch_images.
"""

import hashlib
import json
import re

import pytest
import requests

from devservers.photo_api import PhotoApiServer
from tests.stack_support import running_stack

pytestmark = [pytest.mark.stack, pytest.mark.browser]

RECIPIENT = {"username": "rendition-reader", "password": "rendition-reader-password-not-secret"}
STAFF = {"username": "rendition-staff", "password": "rendition-staff-password-not-secret"}
PHOTOS = 4
BROADCAST = 3
PICTURE_WIDTH = 1600
IMMUTABLE = "private, max-age=31536000, immutable"

SEED = f"""
import json
from django.contrib.auth import get_user_model
from chat.models import Image, ImageRendition, Message
from chat.broadcasts.sending import broadcast_send
users = get_user_model().objects
users.create_user(username={RECIPIENT["username"]!r}, password={RECIPIENT["password"]!r})
users.create_superuser(username={STAFF["username"]!r}, password={STAFF["password"]!r}, email="staff@example.com")
other = users.create_user(username="someone-else")
stored = list(Image.objects.filter(status="stored").order_by("pk"))
broadcast_send(image_ids=[image.pk for image in stored[:{BROADCAST}]])
Message.objects.create(chat=other.chat, image=stored[{BROADCAST}], text="only for someone else")
renditions = {{
    image.pk: [[r.width, r.height, r.sha256, r.byte_size] for r in image.renditions.order_by("width")] for image in stored
}}
print(json.dumps({{"broadcast": [image.pk for image in stored[:{BROADCAST}]], "private": stored[{BROADCAST}].pk,
                  "originals": {{image.pk: image.byte_size for image in stored}}, "renditions": renditions}}))
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with PhotoApiServer(photos=PHOTOS, picture_width=PICTURE_WIDTH) as photo_api:
        overrides = {"IMAGE_API_URL": photo_api.url, "IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "true"}
        with running_stack(
            name="renditions", run_dir=tmp_path_factory.mktemp("renditions-stack"), overrides=overrides
        ) as stack:
            result = stack.manage("fetch_images", "--no-progress", timeout=180)
            assert re.search(rf"newly stored:\s+{PHOTOS}\b", result.stdout), result.stdout
            seeded = json.loads(stack.manage("shell", "-c", SEED).stdout.strip().splitlines()[-1])
            seeded["renditions"] = {int(key): value for key, value in seeded["renditions"].items()}
            seeded["originals"] = {int(key): value for key, value in seeded["originals"].items()}
            stack.seeded = seeded
            yield stack


@pytest.fixture
def browser_context_options():
    return {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 1, "is_mobile": True}


def rendition_path(image_id: int, sha256: str) -> str:
    return f"/api/v1/images/{image_id}/renditions/{sha256}.webp"


def log_in(page, stack, credentials) -> None:
    page.goto(stack.url + "/accounts/login/?next=/chat/")
    page.get_by_label("Username").fill(credentials["username"])
    page.get_by_label("Password").fill(credentials["password"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(stack.url + "/chat/")


def test_a_phone_downloads_renditions_through_srcset_not_the_originals(stack, page):
    seeded = stack.seeded
    downloaded: dict[str, int] = {}
    page.on(
        "response",
        lambda response: (
            "/api/v1/images/" in response.url and downloaded.__setitem__(response.url, len(response.body()))
        ),
    )
    log_in(page, stack, RECIPIENT)
    pictures = page.locator("ol.messages img")
    assert pictures.count() == BROADCAST
    for index, image_id in enumerate(sorted(seeded["broadcast"], reverse=True)):
        picture = pictures.nth(index)
        widths = [width for width, _, _, _ in seeded["renditions"][image_id]]
        assert widths == [320, 640, 1280]
        srcset = picture.get_attribute("srcset")
        assert srcset == ", ".join(
            f"{rendition_path(image_id, sha)} {width}w" for width, _, sha, _ in seeded["renditions"][image_id]
        )
        assert picture.get_attribute("sizes") and picture.get_attribute("loading") == "lazy"
        assert (picture.get_attribute("width"), picture.get_attribute("height")) == ("320", "213")
    pictures.first.scroll_into_view_if_needed()
    page.wait_for_function("() => [...document.querySelectorAll('ol.messages img')].every(img => img.complete)")
    # 390 CSS px at density 1: the column is 358 px wide, so the browser takes the 640 px WebP.
    current = page.eval_on_selector_all("ol.messages img", "images => images.map(img => img.currentSrc)")
    newest = max(seeded["broadcast"])
    _, _, sha_640, _ = seeded["renditions"][newest][1]
    assert current[0] == stack.url + rendition_path(newest, sha_640), current
    assert all(re.search(r"/renditions/[0-9a-f]{64}\.webp$", url) for url in current if url), current
    assert not any(url.endswith("/file") for url in downloaded), downloaded
    originals = sum(seeded["originals"][image_id] for image_id in seeded["broadcast"])
    assert 0 < sum(downloaded.values()) <= originals * 0.10, (downloaded, originals)
    assert page.console_errors == []


def test_renditions_are_served_through_nginx_with_the_originals_authorisation_and_a_years_cache(stack, page):
    seeded = stack.seeded
    log_in(page, stack, RECIPIENT)
    image_id = seeded["broadcast"][0]
    width, height, sha256, byte_size = seeded["renditions"][image_id][1]
    own = page.context.request.get(stack.url + rendition_path(image_id, sha256))
    assert own.status == 200
    body = own.body()
    assert (len(body), hashlib.sha256(body).hexdigest()) == (byte_size, sha256)
    assert own.headers["content-type"] == "image/webp"
    assert own.headers["cache-control"] == IMMUTABLE
    # The bytes came from the bucket by nginx's internal redirect, with the storage's headers replaced by ours.
    assert own.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert own.headers["x-content-type-options"] == "nosniff"
    assert not any(name.startswith("x-amz-") for name in own.headers)
    # The original keeps its short cache: its URL does not name its bytes.
    assert page.context.request.get(f"{stack.url}/api/v1/images/{image_id}/file").headers["cache-control"] == (
        "private, max-age=300"
    )

    # Another user's picture: the same 404 as an image that does not exist.
    private_id = seeded["private"]
    _, _, private_sha, _ = seeded["renditions"][private_id][0]
    refused = page.context.request.get(stack.url + rendition_path(private_id, private_sha))
    assert refused.status == 404
    # A rendition of a visible image under a sha256 that is not its own: 404 too.
    assert page.context.request.get(stack.url + rendition_path(image_id, private_sha)).status == 404
    # The admin's door is for staff only.
    assert page.context.request.get(f"{stack.url}/stored-images/{image_id}/renditions/{sha256}.webp").status == 403
    # Nobody logged in: 401, nothing served.
    anonymous = requests.get(stack.url + rendition_path(image_id, sha256), timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["content-type"].startswith("application/json")

    # The API lists them with their dimensions.
    messages = page.context.request.get(f"{stack.url}/api/v1/chat/messages/").json()["results"]
    listed = {message["image"]["id"]: message["image"]["renditions"] for message in messages}
    assert listed[image_id][1] == {
        "width": width,
        "height": height,
        "url": stack.url + rendition_path(image_id, sha256),
    }
    assert [rendition["width"] for rendition in listed[image_id]] == [320, 640, 1280]


def test_staff_see_rendition_previews_in_the_admin(stack, page):
    seeded = stack.seeded
    page.goto(stack.url + "/admin/login/?next=/admin/chat/image/")
    page.get_by_label("Username").fill(STAFF["username"])
    page.get_by_label("Password").fill(STAFF["password"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(stack.url + "/admin/chat/image/")
    thumbnails = page.locator("#result_list img[srcset]")
    assert thumbnails.count() == PHOTOS
    page.wait_for_function("() => [...document.querySelectorAll('#result_list img')].every(img => img.complete)")
    # 80 px boxes take the 320 px rendition.
    current = page.eval_on_selector_all("#result_list img", "images => images.map(img => img.currentSrc)")
    narrowest = {
        f"{stack.url}/stored-images/{image_id}/renditions/{renditions[0][2]}.webp"
        for image_id, renditions in seeded["renditions"].items()
    }
    assert set(current) == narrowest, current
    image_id = seeded["private"]
    _, _, sha256, _ = seeded["renditions"][image_id][0]
    response = page.context.request.get(f"{stack.url}/stored-images/{image_id}/renditions/{sha256}.webp")
    assert response.status == 200 and response.headers["cache-control"] == IMMUTABLE
