"""After a restart of the no-Docker stack every thumbnail on the Images page still loads (files kept on disk)."""

import hashlib
import os

import pytest
import requests

from deploy.local_stack import LocalStack
from devservers.photo_api import PhotoApiServer
from devservers.s3 import S3Server
from tests.browser.chromium import CHROMIUM, CHROMIUM_FLAGS
from tests.browser.test_admin_broadcast_browser import _stored_thumbnails
from tests.stack_support import clean_environment, stack_database

pytestmark = [pytest.mark.stack, pytest.mark.browser]

ADMIN = {"username": "restart-admin", "password": "restart-admin-password-not-secret"}
PHOTOS = 8
# PRU_RESTART_STORAGE=moto runs the same drill on moto's in-memory server: it must fail.
STORAGE = os.environ.get("PRU_RESTART_STORAGE", "files")


def _stack(run_dir, database_url, photo_api) -> LocalStack:
    return LocalStack(
        environ=clean_environment(),
        overrides={
            "DATABASE_URL": database_url,
            "LOG_FORMAT": "json",
            "IMAGE_API_URL": photo_api.url,
            "IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
            "DJANGO_SUPERUSER_USERNAME": ADMIN["username"],
            "DJANGO_SUPERUSER_PASSWORD": ADMIN["password"],
            "DJANGO_SUPERUSER_EMAIL": "restart-admin@example.com",
        },
        run_dir=run_dir,
        s3_server=S3Server() if STORAGE == "moto" else None,
    )


def test_every_thumbnail_loads_after_the_stack_restarts(tmp_path):
    from playwright.sync_api import sync_playwright

    run_dir = tmp_path / "stack"
    with PhotoApiServer(photos=PHOTOS, image_size=20_000) as photo_api, stack_database("restart") as database_url:
        with _stack(run_dir, database_url, photo_api) as stack:
            fetched = stack.manage("fetch_images", "--no-progress", timeout=120)
            assert f"newly stored:   {PHOTOS}" in fetched.stdout, fetched.stdout

        with _stack(run_dir, database_url, photo_api) as stack, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(20_000)
                page.goto(stack.url + "/admin/login/")
                page.fill("#id_username", ADMIN["username"])
                page.fill("#id_password", ADMIN["password"])
                page.click("input[type=submit]")
                page.wait_for_url(stack.url + "/admin/")
                page.goto(stack.url + "/admin/chat/image/")
                widths = _stored_thumbnails(page)
                assert len(widths) == PHOTOS and all(width > 0 for width in widths), widths

                # nginx sent the file from disk, with the sandbox policy, and kept Django's caching rule.
                source = page.eval_on_selector('#result_list img[src*="/stored-images/"]', "img => img.src")
                cookies = {cookie["name"]: cookie["value"] for cookie in page.context.cookies()}
                # The thumbnail is a rendition, named by its bytes: cached for a year.
                rendition = requests.get(source, cookies=cookies, timeout=10)
                assert rendition.status_code == 200 and rendition.headers["Content-Type"] == "image/webp"
                assert hashlib.sha256(rendition.content).hexdigest() + ".webp" == source.rsplit("/", 1)[1]
                assert rendition.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
                assert rendition.headers["Cache-Control"] == "private, max-age=31536000, immutable"
                assert "X-Accel-Redirect" not in rendition.headers
                response = requests.get(source.split("/renditions/")[0], cookies=cookies, timeout=10)
                assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
                assert response.content in {photo_api.image_bytes(number) for number in range(1, PHOTOS + 1)}
                assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
                assert response.headers["Cache-Control"] == "private, max-age=300"
                assert "X-Accel-Redirect" not in response.headers
                assert requests.get(stack.url + "/internal-media/", timeout=10).status_code == 404
            finally:
                browser.close()
