"""The original's manual test, in Debian's chromium through nginx: log in, fetch, broadcast, check messages and images."""

import json
import re

import pytest
import requests

from devservers.photo_api import PhotoApiServer
from tests.browser.chromium import artifacts_dir
from tests.stack_support import running_stack

pytestmark = [pytest.mark.stack, pytest.mark.browser]

ADMIN = {"username": "browser-admin", "password": "browser-admin-password-not-secret"}
PHOTOS = 6
EXTRA_USERS = 3
SEND_ACTION_LABEL = "Send selected images as messages to all chats"


@pytest.fixture(scope="module")
def photo_api():
    with PhotoApiServer(photos=PHOTOS, image_size=30_000) as server:
        yield server


@pytest.fixture(scope="module")
def stack(photo_api, tmp_path_factory):
    overrides = {
        "IMAGE_API_URL": photo_api.url,
        "IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
        "DJANGO_SUPERUSER_USERNAME": ADMIN["username"],
        "DJANGO_SUPERUSER_PASSWORD": ADMIN["password"],
        "DJANGO_SUPERUSER_EMAIL": "browser-admin@example.com",
        "GUNICORN_ACCESS_LOG": "-",
    }
    with running_stack(name="browser", run_dir=tmp_path_factory.mktemp("browser-stack"), overrides=overrides) as stack:
        # Every user gets a chat on creation (the superuser's came with the init script).
        stack.manage(
            "shell",
            "-c",
            (
                "from django.contrib.auth import get_user_model\n"
                f"for n in range({EXTRA_USERS}): get_user_model().objects.create_user(username=f'chat-user-{{n}}')"
            ),
        )
        yield stack


@pytest.fixture(scope="module")
def fetched(stack):
    """fetch_images against the local photo API, once for the module; its output."""
    result = stack.manage("fetch_images", "--no-progress", timeout=120)
    assert re.search(rf"newly stored:\s+{PHOTOS}\b", result.stdout), result.stdout
    return result.stdout


def _stored_thumbnails(page):
    """naturalWidth of every stored-image <img> in the changelist, once each has finished loading."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('#result_list img[src*=\"/stored-images/\"]')].every(img => img.complete)"
    )
    return page.eval_on_selector_all(
        '#result_list img[src*="/stored-images/"]', "images => images.map(img => img.naturalWidth)"
    )


def test_staff_fetches_broadcasts_and_sees_one_message_per_chat_per_image_through_nginx(stack, fetched, page):
    page.goto(stack.url + "/admin/login/")
    page.fill("#id_username", ADMIN["username"])
    page.fill("#id_password", ADMIN["password"])
    page.click("input[type=submit]")
    page.wait_for_url(stack.url + "/admin/")

    page.goto(stack.url + "/admin/chat/image/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == PHOTOS
    widths = _stored_thumbnails(page)
    assert len(widths) == PHOTOS and all(width > 0 for width in widths), widths
    screenshot = artifacts_dir() / "admin-images.png"
    page.screenshot(path=str(screenshot), full_page=True)

    selected = 2
    for index in range(selected):
        rows.nth(index).locator("input.action-select").check()
    page.select_option("select[name=action]", label=SEND_ACTION_LABEL)
    page.click("button[name=index]")
    success = page.locator(".messagelist .success").inner_text()
    chats = EXTRA_USERS + 1
    assert f"Created {chats * selected} messages for {chats} chats ({selected} images)" in success, success

    page.goto(stack.url + "/admin/chat/message/")
    message_rows = page.locator("#result_list tbody tr")
    assert message_rows.count() == chats * selected
    pairs = {
        (row.locator("td.field-chat_user").inner_text(), row.locator("td.field-image").inner_text())
        for row in message_rows.all()
    }
    assert len(pairs) == chats * selected  # one message per chat per image, no repeats
    message_widths = _stored_thumbnails(page)
    assert len(message_widths) == chats * selected and all(width > 0 for width in message_widths)
    page.screenshot(path=str(artifacts_dir() / "admin-messages.png"), full_page=True)
    # nginx's Content-Security-Policy let every admin script and style run.
    assert page.console_errors == []
    assert screenshot.stat().st_size > 10_000


def _stored_image(stack) -> tuple[int, str]:
    """The id and storage key of one stored image, read with the stack's settings."""
    output = stack.manage(
        "shell",
        "-c",
        (
            "from chat.models import Image\n"
            "image = Image.objects.filter(status='stored').order_by('pk').first()\n"
            "print(image.pk, image.file.name)"
        ),
    ).stdout.split()
    return int(output[-2]), output[-1]


def test_stored_image_bytes_reach_staff_through_nginx_and_nobody_else(stack, fetched):
    image_id, key = _stored_image(stack)
    url = f"{stack.url}/stored-images/{image_id}"
    stored = stack.s3_server.client().get_object(Bucket=stack.env["AWS_STORAGE_BUCKET_NAME"], Key=key)["Body"].read()

    anonymous = requests.get(url, timeout=10, allow_redirects=False)
    assert anonymous.status_code in (302, 403)
    assert stored not in anonymous.content

    session = requests.Session()
    session.get(stack.url + "/admin/login/", timeout=10)
    session.post(
        stack.url + "/admin/login/",
        timeout=10,
        data={
            **ADMIN,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
    )
    response = session.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("image/")
    assert response.content == stored
    # Gunicorn sent no body (X-Accel-Redirect): nginx fetched the bytes from the storage itself,
    # and kept the storage's own headers back.
    assert "x-amz-request-id" not in {name.lower() for name in response.headers}
    assert "X-Accel-Redirect" not in response.headers
    access = [
        json.loads(line)
        for line in stack.log_text("gunicorn").splitlines()
        if line.startswith("{") and '"gunicorn.access"' in line and f"/stored-images/{image_id}" in line
    ]
    served = [record["bytes"] for record in access if record["status"] == 200]
    assert served and set(served) == {0}, access
