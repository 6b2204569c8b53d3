"""Hostile requests through real nginx and Gunicorn: each refused with the right status, no 500, the database unchanged."""

import http.client
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import EDGE_ADMIN, LOGIN_BURST, LOGIN_RATE_PER_SECOND, OUTSIDE_ADDRESS, client_from, table_counts

pytestmark = pytest.mark.stack

PLAIN_USER = {"username": "plain-user", "password": "plain-user-password-for-tests"}


@pytest.fixture(scope="module")
def plain_session(edge_stack) -> requests.Session:
    """A signed-in user who is not staff (the admin's login refuses them, so the session is made directly)."""
    output = edge_stack.manage(
        "shell",
        "-c",
        (
            "from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model\n"
            "from django.contrib.sessions.backends.db import SessionStore\n"
            f"user = get_user_model().objects.create_user(username={PLAIN_USER['username']!r}, "
            f"password={PLAIN_USER['password']!r})\n"
            "session = SessionStore()\n"
            "session[SESSION_KEY] = str(user.pk)\n"
            "session[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
            "session[HASH_SESSION_KEY] = user.get_session_auth_hash()\n"
            "session.create()\n"
            "print('session:', session.session_key)"
        ),
    ).stdout
    session = requests.Session()
    session.cookies.set("sessionid", output.rpartition("session:")[2].strip())
    return session


@pytest.fixture(scope="module")
def admin_urls(edge_stack, plain_session) -> list[str]:
    """Every admin page of every registered model (list, add, change, delete, history), from Django's own URLconf."""
    output = edge_stack.manage(
        "shell",
        "-c",
        (
            "import json\n"
            "from django.apps import apps\n"
            "from django.contrib import admin\n"
            "from django.urls import reverse\n"
            "urls = [reverse('admin:index'), reverse('admin:password_change')]\n"
            "for model in apps.get_models():\n"
            "    if not admin.site.is_registered(model):\n"
            "        continue\n"
            "    meta = model._meta\n"
            "    name = f'admin:{meta.app_label}_{meta.model_name}'\n"
            "    urls += [reverse('admin:app_list', args=[meta.app_label]), reverse(name + '_changelist'),"
            " reverse(name + '_add')]\n"
            "    first = model._default_manager.order_by('pk').first()\n"
            "    if first is not None:\n"
            "        urls += [reverse(name + view, args=[first.pk]) for view in ('_change', '_delete', '_history')]\n"
            "print('urls:', json.dumps(sorted(set(urls))))"
        ),
    ).stdout
    urls = json.loads(output.rpartition("urls:")[2])
    assert any("/chat/image/" in url for url in urls) and any("/auth/user/" in url for url in urls), urls
    return urls


@pytest.fixture
def unchanged_database(edge_stack):
    """Asserts, after the test, that no row was added, changed in number, or removed."""
    before = table_counts(edge_stack.env["DATABASE_URL"])
    yield
    assert table_counts(edge_stack.env["DATABASE_URL"]) == before


@pytest.fixture(autouse=True)
def no_server_errors(edge_stack):
    yield
    nginx = [json.loads(line) for line in edge_stack.log_text("nginx").splitlines() if line.startswith("{")]
    assert not [record for record in nginx if record["status"] >= 500], "nginx answered a 5xx"
    gunicorn = [json.loads(line) for line in edge_stack.log_text("gunicorn").splitlines() if line.startswith("{")]
    failures = [
        record
        for record in gunicorn
        if (record.get("code") or 0) >= 500
        or (record.get("status") or 0) >= 500
        or record.get("event") == "request_failed"
    ]
    assert not failures, failures[:3]


def _raw_request(stack, method: str, target: str, headers: dict | None = None, body: bytes = b"") -> tuple[int, bytes]:
    """Exactly this request line: requests and urllib3 would normalise dot segments and encodings."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in ({"Host": "localhost"} | (headers or {})).items():
            connection.putheader(name, value)
        if body:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_an_oversized_body_is_refused_by_nginx_before_django(edge_stack, unchanged_database):
    # NGINX_CLIENT_MAX_BODY_SIZE is 1m in this stack.
    response = requests.post(
        edge_stack.url + "/admin/chat/image/",
        data=b"x" * (2 * 1024 * 1024),
        timeout=30,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 413


@pytest.mark.parametrize("host", ["evil.example", "localhost.evil.example", "127.0.0.1@evil.example", "", "local host"])
def test_a_wrong_host_header_is_refused_with_400(edge_stack, unchanged_database, host):
    status, _ = _raw_request(edge_stack, "GET", "/admin/login/", headers={"Host": host})
    assert status == 400


def test_a_forwarded_host_from_the_client_does_not_change_the_host(edge_stack, unchanged_database):
    response = requests.get(
        edge_stack.url + "/admin/login/?next=/admin/", headers={"X-Forwarded-Host": "evil.example"}, timeout=10
    )
    assert response.status_code == 200 and "evil.example" not in response.text


def test_a_forged_x_forwarded_for_from_outside_does_not_open_readyz(edge_stack, unchanged_database):
    response = client_from(OUTSIDE_ADDRESS).get(
        edge_stack.url + "/readyz", headers={"X-Forwarded-For": "127.0.0.1"}, timeout=10
    )
    assert response.status_code == 403


def test_a_forged_x_forwarded_proto_does_not_make_a_plain_request_secure(edge_stack, unchanged_database):
    # Django checks the Referer of secure POSTs only: a request it took for HTTPS would fail CSRF
    # (403) here, a plain one reaches the login form (wrong password: 200, no session).
    session = client_from("127.0.0.6")
    session.get(edge_stack.url + "/admin/login/", timeout=10)
    response = session.post(
        edge_stack.url + "/admin/login/",
        timeout=10,
        headers={"X-Forwarded-Proto": "https"},
        data={
            "username": EDGE_ADMIN["username"],
            "password": "wrong-password",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
    )
    assert response.status_code == 200
    assert "correct username and password" in response.text


def test_a_client_request_id_is_replaced_by_nginx(edge_stack, unchanged_database):
    forged = f"forged-{secrets.token_hex(4)}"
    response = requests.get(edge_stack.url + "/admin/login/", headers={"X-Request-ID": forged}, timeout=10)
    assert response.headers["X-Request-ID"] != forged
    time.sleep(0.3)
    assert forged not in edge_stack.log_text("gunicorn") and forged not in edge_stack.log_text("nginx")


@pytest.mark.parametrize(
    "target",
    [
        "/static/../manage.py",
        "/static/../../../../etc/passwd",
        "/static/..%2f..%2f..%2fetc%2fpasswd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/admin/../../../pru_app/settings.py",
        "/static..%2fmanage.py",
        "/static//etc/passwd",
    ],
)
def test_path_traversal_on_static_finds_nothing_outside_the_static_root(edge_stack, unchanged_database, target):
    status, body = _raw_request(edge_stack, "GET", target)
    assert status in (400, 404), (status, body[:200])
    assert b"root:" not in body and b"DJANGO_SETTINGS_MODULE" not in body and b"import" not in body


@pytest.mark.parametrize(
    "target",
    [
        "/internal-storage/pru-edge/",
        "/internal-storage/pru-edge/images/1.jpeg",
        "/internal%2Dstorage/pru-edge/x",
        "//internal-storage/pru-edge/x",
    ],
)
def test_the_internal_storage_location_is_404_from_outside(edge_stack, unchanged_database, target):
    status, _ = _raw_request(edge_stack, "GET", target)
    assert status == 404


def test_a_post_without_a_csrf_token_is_refused_and_sends_nothing(
    edge_stack, staff_session, stored_image_ids, unchanged_database
):
    # A staff session, the broadcast action, every field but the token: nothing is sent.
    response = requests.post(
        edge_stack.url + "/admin/chat/image/",
        cookies={"sessionid": staff_session.cookies["sessionid"]},
        data={"action": "send_to_all_chats", "_selected_action": [str(pk) for pk in stored_image_ids], "index": "0"},
        timeout=10,
        allow_redirects=False,
    )
    assert response.status_code == 403
    assert "CSRF" in response.text


def test_a_login_brute_force_is_limited_with_429_and_recovers(edge_stack, unchanged_database):
    bootstrap = client_from("127.0.0.7")
    bootstrap.get(edge_stack.url + "/admin/login/", timeout=10)
    token = bootstrap.cookies["csrftoken"]

    def attempt(number):
        # Guesses arrive together, as a script sends them: each password check takes longer than
        # the limit's interval, so one after the other would never exceed it.
        attacker = client_from("127.0.0.7")
        attacker.cookies.set("csrftoken", token)
        return attacker.post(
            edge_stack.url + "/admin/login/",
            timeout=30,
            data={
                "username": EDGE_ADMIN["username"],
                "password": f"guess-{number}",
                "csrfmiddlewaretoken": token,
            },
        ).status_code

    with ThreadPoolExecutor(max_workers=LOGIN_BURST + 5) as pool:
        statuses = list(pool.map(attempt, range(LOGIN_BURST + 5)))
    assert statuses.count(200) <= LOGIN_BURST + 1 and 429 in statuses, statuses
    assert set(statuses) <= {200, 429}, statuses
    time.sleep(1.5 / LOGIN_RATE_PER_SECOND)
    assert attempt("after") == 200  # the form again: the limit recovered, the guess was still wrong


def test_a_user_who_is_not_staff_reaches_no_admin_page_and_no_stored_image(
    edge_stack, plain_session, admin_urls, stored_image_ids, unchanged_database
):
    for url in admin_urls:
        response = plain_session.get(edge_stack.url + url, timeout=10, allow_redirects=False)
        assert response.status_code == 302, (url, response.status_code)
        assert response.headers["Location"].startswith("/admin/login/"), url
    for pk in stored_image_ids:
        response = plain_session.get(f"{edge_stack.url}/stored-images/{pk}", timeout=10, allow_redirects=False)
        assert response.status_code == 403
        assert response.headers["Content-Type"].startswith("text/plain")
    # With a valid token, a non-staff POST of the broadcast action is sent back to the login page.
    plain_session.get(edge_stack.url + "/admin/login/", timeout=10)
    response = plain_session.post(
        edge_stack.url + "/admin/chat/image/",
        timeout=10,
        allow_redirects=False,
        data={
            "action": "send_to_all_chats",
            "_selected_action": [str(pk) for pk in stored_image_ids],
            "csrfmiddlewaretoken": plain_session.cookies["csrftoken"],
        },
    )
    assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login/")
