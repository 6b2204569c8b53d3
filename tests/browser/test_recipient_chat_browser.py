"""A recipient in Debian's chromium through nginx: log in, see the broadcast pictures, mark them read; nobody else's."""

import json
import re

import pytest
import requests

from devservers.photo_api import PhotoApiServer
from tests.browser.chromium import artifacts_dir
from tests.stack_support import running_stack

pytestmark = [pytest.mark.stack, pytest.mark.browser]

RECIPIENT = {"username": "recipient", "password": "recipient-password-not-secret"}
PHOTOS = 4
BROADCAST = 3
LOGIN_BURST = 3

# Runs in `manage.py shell` with the stack's settings: users, one broadcast through the service,
# and one message only another user's chat holds.
SEED = f"""
import json
from django.contrib.auth import get_user_model
from chat.models import Image, Message
from chat.broadcasts.sending import broadcast_send
users = get_user_model().objects
users.create_user(username={RECIPIENT["username"]!r}, password={RECIPIENT["password"]!r})
other = users.create_user(username="someone-else")
stored = list(Image.objects.filter(status="stored").order_by("pk"))
broadcast = broadcast_send(image_ids=[image.pk for image in stored[:{BROADCAST}]]).broadcast
Message.objects.create(chat=other.chat, image=stored[{BROADCAST}], text="only for someone else")
print(json.dumps({{"created": broadcast.created_count, "broadcast": [image.pk for image in stored[:{BROADCAST}]],
                  "private": stored[{BROADCAST}].pk}}))
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with PhotoApiServer(photos=PHOTOS, image_size=20_000) as photo_api:
        overrides = {
            "IMAGE_API_URL": photo_api.url,
            "IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
            "NGINX_LOGIN_RATE": "60r/m",
            "NGINX_LOGIN_BURST": str(LOGIN_BURST),
        }
        with running_stack(
            name="recipient", run_dir=tmp_path_factory.mktemp("recipient-stack"), overrides=overrides
        ) as stack:
            result = stack.manage("fetch_images", "--no-progress", timeout=120)
            assert re.search(rf"newly stored:\s+{PHOTOS}\b", result.stdout), result.stdout
            stack.seeded = json.loads(stack.manage("shell", "-c", SEED).stdout.strip().splitlines()[-1])
            yield stack


@pytest.fixture
def browser_context_options():
    # A phone's width.
    return {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True}


def _unread(page) -> int:
    return int(page.locator("#unread-count").inner_text())


def test_a_recipient_sees_the_broadcast_pictures_marks_them_read_and_cannot_open_anyone_elses(stack, page):
    page.goto(stack.url + "/chat/")
    assert page.url.startswith(stack.url + "/accounts/login/?next=")
    page.get_by_label("Username").fill(RECIPIENT["username"])
    page.get_by_label("Password").fill(RECIPIENT["password"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(stack.url + "/chat/")

    pictures = page.locator("ol.messages img")
    assert pictures.count() == BROADCAST
    page.wait_for_function("() => [...document.querySelectorAll('ol.messages img')].every(img => img.complete)")
    widths = page.eval_on_selector_all("ol.messages img", "images => images.map(img => img.naturalWidth)")
    assert len(widths) == BROADCAST and all(width > 0 for width in widths), widths
    assert _unread(page) == BROADCAST
    # Fits a phone: nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(artifacts_dir() / "recipient-chat.png"), full_page=True)

    page.get_by_role("button", name="Mark all as read").click()
    page.wait_for_url(stack.url + "/chat/")
    assert _unread(page) == 0
    assert page.locator(".badge").count() == 0
    assert page.console_errors == []

    # The same session, as the page's own requests send it: the broadcast pictures yes, another user's no.
    own = page.context.request.get(f"{stack.url}/api/v1/images/{stack.seeded['broadcast'][0]}/file")
    assert own.status == 200 and own.headers["content-type"].startswith("image/")
    private = page.context.request.get(f"{stack.url}/api/v1/images/{stack.seeded['private']}/file")
    assert private.status == 404
    assert private.json() == page.context.request.get(f"{stack.url}/api/v1/images/999999/file").json()
    summary = page.context.request.get(f"{stack.url}/api/v1/chat/").json()
    assert (summary["message_count"], summary["unread_count"]) == (BROADCAST, 0)

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(stack.url + "/accounts/login/")
    assert page.context.request.get(f"{stack.url}/api/v1/chat/").status == 401


def test_recipient_login_posts_are_rate_limited_like_the_admins(stack):
    statuses = [
        requests.post(stack.url + "/accounts/login/", data={}, timeout=10).status_code for _ in range(LOGIN_BURST + 4)
    ]
    # The burst reaches Django (403: no CSRF token); then nginx answers 429 itself.
    assert statuses[0] == 403 and 429 in statuses, statuses
    # The admin's login shares the limit: switching forms buys no extra guesses.
    assert requests.post(stack.url + "/admin/login/", data={}, timeout=10).status_code == 429
    assert requests.get(stack.url + "/accounts/login/", timeout=10).status_code == 200
