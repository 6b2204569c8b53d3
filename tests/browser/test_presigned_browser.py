"""IMAGE_SERVE_MODE=presigned in Debian's chromium through nginx: thumbnails load from the storage's public origin."""

import re

import pytest

from devservers.photo_api import PhotoApiServer
from devservers.s3 import ACCESS_KEY, SECRET_KEY, S3Server
from tests.browser.chromium import CHROMIUM, CHROMIUM_FLAGS
from tests.minio_headers_proxy import MinioHeadersProxy
from tests.stack_support import running_stack

pytestmark = [pytest.mark.stack, pytest.mark.browser]

ADMIN = {"username": "presigned-admin", "password": "presigned-admin-password-for-tests"}
PHOTOS = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # The app talks to the storage on one address; browsers reach it on another (the public one),
    # as with http://minio:9000 inside compose and http://localhost:9000 outside.
    with (
        S3Server() as s3,
        MinioHeadersProxy(upstream=s3.host_port) as public_storage,
        PhotoApiServer(photos=PHOTOS, image_size=8_000) as photo_api,
    ):
        s3.create_bucket("pru-presigned")
        overrides = {
            "IMAGE_SERVE_MODE": "presigned",
            "AWS_S3_ENDPOINT_URL": s3.endpoint_url,
            "AWS_S3_PUBLIC_ENDPOINT_URL": public_storage.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_STORAGE_BUCKET_NAME": "pru-presigned",
            "IMAGE_API_URL": photo_api.url,
            "IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
            "DJANGO_SUPERUSER_USERNAME": ADMIN["username"],
            "DJANGO_SUPERUSER_PASSWORD": ADMIN["password"],
            "DJANGO_SUPERUSER_EMAIL": "presigned-admin@example.com",
        }
        with running_stack(
            name="presigned", run_dir=tmp_path_factory.mktemp("presigned"), overrides=overrides
        ) as stack:
            result = stack.manage("fetch_images", "--no-progress", timeout=120)
            assert re.search(rf"newly stored:\s+{PHOTOS}\b", result.stdout), result.stdout
            stack.public_storage_url = public_storage.endpoint_url
            yield stack


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.console_errors = []
        page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
        yield page
        browser.close()


def test_presigned_thumbnails_load_from_the_public_storage_origin(stack, page):
    storage_requests = []
    page.on(
        "request",
        lambda request: request.url.startswith(stack.public_storage_url) and storage_requests.append(request.url),
    )
    page.goto(stack.url + "/admin/login/")
    page.fill("#id_username", ADMIN["username"])
    page.fill("#id_password", ADMIN["password"])
    page.click("input[type=submit]")
    page.wait_for_url(stack.url + "/admin/")

    response = page.goto(stack.url + "/admin/chat/image/")
    img_src = re.search(r"img-src ([^;]*)", response.headers["content-security-policy"]).group(1).split()
    assert img_src == ["'self'", "data:", "blob:", stack.public_storage_url]
    page.wait_for_function(
        "() => [...document.querySelectorAll('#result_list img[src*=\"/stored-images/\"]')].every(img => img.complete)"
    )
    widths = page.eval_on_selector_all(
        '#result_list img[src*="/stored-images/"]', "images => images.map(i => i.naturalWidth)"
    )
    assert len(widths) == PHOTOS and all(width > 0 for width in widths), (widths, page.console_errors)
    # Each thumbnail was a redirect to a signed URL of the public origin, fetched by the browser.
    assert len([url for url in storage_requests if "X-Amz-Signature=" in url]) >= PHOTOS, storage_requests
    assert page.console_errors == []
