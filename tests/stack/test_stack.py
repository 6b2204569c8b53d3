"""The production stack on loopback: real nginx (the compose template), Gunicorn, PostgreSQL and moto's S3 server."""

import json
import re
import time
from pathlib import Path

import pytest
import requests

from tests.stack_support import running_stack

pytestmark = pytest.mark.stack

LOGIN_RATE_PER_SECOND = 1
LOGIN_BURST = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    overrides = {
        # A home of its own shows whether Gunicorn writes a control socket there.
        "HOME": str(home),
        "XDG_RUNTIME_DIR": "",
        # Gunicorn's access log shows exactly which requests got past nginx.
        "GUNICORN_ACCESS_LOG": "-",
        "NGINX_LOGIN_RATE": f"{LOGIN_RATE_PER_SECOND * 60}r/m",
        "NGINX_LOGIN_BURST": str(LOGIN_BURST),
    }
    with running_stack(name="proxy", run_dir=tmp_path_factory.mktemp("stack"), overrides=overrides) as stack:
        yield stack


def test_gunicorn_writes_no_control_socket_into_the_home_directory(stack):
    home = Path(stack.env["HOME"])
    assert requests.get(stack.url + "/healthz", timeout=10).status_code == 200
    assert not (home / ".gunicorn").exists()
    assert list(home.iterdir()) == []


def test_gunicorn_serves_with_sync_workers_by_default(stack):
    # Gunicorn turns sync into gthread when GUNICORN_THREADS > 1: its own start line says which ran.
    assert requests.get(stack.url + "/healthz", timeout=10).status_code == 200
    started = _wait_for_log(stack, "gunicorn", lambda line: "Using worker:" in line)
    assert started and all("Using worker: sync" in line for line in started), started


def _wait_for_log(stack, name, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        lines = stack.log_text(name).splitlines()
        found = [line for line in lines if predicate(line)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _static_file(stack) -> tuple[str, Path]:
    """The hashed name of the admin stylesheet, as Django's pages reference it, and its file."""
    static_root = Path(stack.env["DJANGO_STATIC_ROOT"])
    manifest = json.loads((static_root / "staticfiles.json").read_text())
    hashed = manifest["paths"]["admin/css/base.css"]
    return f"/static/{hashed}", static_root / hashed


def test_pages_reference_hashed_static_files_that_nginx_serves_without_gunicorn(stack):
    static_url, static_file = _static_file(stack)
    login_page = requests.get(stack.url + "/admin/login/", timeout=10)
    assert static_url in login_page.text

    response = requests.get(stack.url + static_url, headers={"Accept-Encoding": "identity"}, timeout=10)
    assert response.status_code == 200
    assert response.content == static_file.read_bytes()
    assert "max-age=31536000" in response.headers["Cache-Control"]
    assert response.headers["Content-Type"].startswith("text/css")

    marker = f"/readyz?after-static-{time.monotonic_ns()}"
    requests.get(stack.url + marker, timeout=10)
    # The marker request shows the access log is being written; the static one never got there.
    assert _wait_for_log(stack, "gunicorn", lambda line: marker in line)
    assert not [line for line in stack.log_text("gunicorn").splitlines() if "/static/" in line]


def test_static_files_are_gzipped_for_clients_that_accept_it(stack):
    static_url, _ = _static_file(stack)
    response = requests.get(stack.url + static_url, headers={"Accept-Encoding": "gzip"}, timeout=10, stream=True)
    assert response.headers.get("Content-Encoding") == "gzip"
    assert "Accept-Encoding" in response.headers.get("Vary", "")


@pytest.mark.parametrize("path", ["/admin/login/", "static", "/static/no-such-file.css", "/healthz"])
def test_security_headers_are_present_once_on_every_kind_of_response(stack, path):
    if path == "static":
        path, _ = _static_file(stack)
    response = requests.get(stack.url + path, timeout=10)
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "camera=()" in headers["Permissions-Policy"]
    assert headers["Server"] == "nginx"  # no version
    # requests joins repeated headers with ", ": Django's copy and nginx's must not both be sent.
    assert "," not in headers["X-Frame-Options"] and "," not in headers["X-Content-Type-Options"]


def test_nginx_request_id_replaces_the_clients_and_reaches_djangos_log(stack):
    spoofed = "client-chosen-request-id"
    response = requests.get(stack.url + "/admin/login/", headers={"X-Request-ID": spoofed}, timeout=10)
    request_id = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)

    def finished_with_id(line):
        return line.startswith("{") and '"request_finished"' in line and request_id in line

    lines = _wait_for_log(stack, "gunicorn", finished_with_id)
    assert lines, stack.log_text("gunicorn")[-2000:]
    record = json.loads(lines[0])
    assert record["request_id"] == request_id
    assert record["path"] == "/admin/login/"
    assert spoofed not in stack.log_text("gunicorn")


def test_admin_login_posts_are_rate_limited_and_the_limit_recovers(stack):
    statuses = [
        requests.post(stack.url + "/admin/login/", data={}, timeout=10).status_code for _ in range(LOGIN_BURST + 6)
    ]
    # The first burst reaches Django (403: no CSRF token); then nginx answers 429 itself.
    assert statuses[0] != 429
    assert 429 in statuses, statuses
    # Reading the login page and the health probe are never limited.
    assert requests.get(stack.url + "/admin/login/", timeout=10).status_code == 200
    assert requests.get(stack.url + "/healthz", timeout=10).status_code == 200

    time.sleep(1.5 / LOGIN_RATE_PER_SECOND)
    assert requests.post(stack.url + "/admin/login/", data={}, timeout=10).status_code == 403


def test_internal_storage_location_is_not_reachable_from_outside(stack):
    bucket = stack.env["AWS_STORAGE_BUCKET_NAME"]
    response = requests.get(f"{stack.url}/internal-storage/{bucket}/anything", timeout=10)
    assert response.status_code == 404


def test_readyz_names_storage_while_it_is_down_and_recovers_when_it_is_back(stack):
    assert requests.get(stack.url + "/readyz", timeout=10).status_code == 200
    stack.stop_storage()
    try:
        response = requests.get(stack.url + "/readyz", timeout=60)
        assert response.status_code == 503
        assert "storage" in response.json()["failed"]
        assert "database" not in response.json()["failed"]
        assert requests.get(stack.url + "/healthz", timeout=10).status_code == 200
    finally:
        stack.start_storage()
    assert requests.get(stack.url + "/readyz", timeout=60).status_code == 200
