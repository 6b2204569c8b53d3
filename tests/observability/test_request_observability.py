"""Requests through real nginx and Gunicorn (the no-Docker stack): JSON request lines and the Sentry error event."""

import json
import re
import time

import psycopg2
import pytest
import requests

from devservers.sentry_ingest import SentryIngestServer
from tests.stack_support import running_stack

from .conftest import exception_types, parse_json_lines

pytestmark = pytest.mark.stack

ADMIN_USERNAME = "observer"
ADMIN_PASSWORD = "observer-password-for-tests-only"


@pytest.fixture(scope="module")
def ingest():
    with SentryIngestServer() as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory, ingest):
    overrides = {
        "SENTRY_DSN": ingest.dsn,
        "SENTRY_ENVIRONMENT": "stack-test",
        "GUNICORN_ACCESS_LOG": "-",
        "DJANGO_SUPERUSER_USERNAME": ADMIN_USERNAME,
        "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
        "DJANGO_SUPERUSER_EMAIL": "observer@example.com",
    }
    with running_stack(name="observability", run_dir=tmp_path_factory.mktemp("stack"), overrides=overrides) as stack:
        yield stack


@pytest.fixture(scope="module")
def admin_session(stack):
    session = requests.Session()
    session.get(stack.url + "/admin/login/", timeout=10)
    response = session.post(
        stack.url + "/admin/login/",
        data={
            "username": ADMIN_USERNAME,
            "password": ADMIN_PASSWORD,
            "next": "/admin/",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=10,
    )
    assert response.status_code == 200 and "/admin/logout/" in response.text, response.text[:500]
    return session


def _gunicorn_lines(stack) -> list[dict]:
    return parse_json_lines(stack.log_text("gunicorn"))


def _wait_for_lines(stack, predicate, timeout=5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in _gunicorn_lines(stack) if predicate(line)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _user_id(stack) -> int:
    with psycopg2.connect(stack.env["DATABASE_URL"], connect_timeout=5) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT id FROM auth_user WHERE username = %s", [ADMIN_USERNAME])
        return cursor.fetchone()[0]


def test_every_line_gunicorn_and_django_write_is_a_json_object(stack):
    requests.get(stack.url + "/readyz", timeout=10)
    lines = _gunicorn_lines(stack)
    loggers = {line.get("logger") for line in lines}
    assert {"gunicorn.error", "gunicorn.access", "django_structlog.middlewares.request"} <= loggers
    for line in lines:
        assert {"event", "level", "logger", "timestamp"} <= set(line), line


def test_request_line_carries_nginx_request_id_user_method_path_status_and_duration(stack, admin_session):
    response = admin_session.get(stack.url + "/admin/", headers={"X-Request-ID": "forged-by-the-client"}, timeout=10)
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    assert request_id != "forged-by-the-client"

    [finished] = _wait_for_lines(
        stack, lambda line: line["event"] == "request_finished" and line.get("request_id") == request_id
    )
    assert finished["user_id"] == _user_id(stack)
    assert (finished["method"], finished["path"], finished["status"]) == ("GET", "/admin/", 200)
    assert isinstance(finished["duration_ms"], float) and finished["duration_ms"] >= 0
    [access] = _wait_for_lines(
        stack, lambda line: line["event"] == "gunicorn.access" and line.get("request_id") == request_id
    )
    assert (access["method"], access["path"], access["status"]) == ("GET", "/admin/", 200)
    assert access["duration_ms"] >= 0
    nginx_lines = [line for line in stack.log_text("nginx").splitlines() if request_id in line]
    assert nginx_lines, "nginx did not log the request id it sent"


def test_anonymous_request_line_has_a_null_user_id(stack):
    response = requests.get(stack.url + "/admin/login/", timeout=10)
    request_id = response.headers["X-Request-ID"]
    [finished] = _wait_for_lines(
        stack, lambda line: line["event"] == "request_finished" and line.get("request_id") == request_id
    )
    assert finished["user_id"] is None and finished["status"] == 200


def test_an_exception_in_a_request_is_exactly_one_sentry_event_tagged_with_the_request_id(stack, admin_session, ingest):
    ingest.clear()
    # A real failure on a real code path: the admin's image list without its table (as after a
    # deploy that skipped a migration).
    with psycopg2.connect(stack.env["DATABASE_URL"], connect_timeout=5) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE chat_image RENAME TO chat_image_hidden")
    try:
        response = admin_session.get(stack.url + "/admin/chat/image/", timeout=10)
    finally:
        with psycopg2.connect(stack.env["DATABASE_URL"], connect_timeout=5) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("ALTER TABLE chat_image_hidden RENAME TO chat_image")
    assert response.status_code == 500
    request_id = response.headers["X-Request-ID"]

    assert ingest.wait_for(lambda server: server.events, timeout=15)
    time.sleep(1.0)  # a duplicate would be sent right after the first; give it the chance
    [event] = ingest.events
    assert exception_types(event)[-1] == "ProgrammingError" and "UndefinedTable" in exception_types(event)
    assert event["tags"]["request_id"] == request_id
    assert event["environment"] == "stack-test"
    assert event["request"]["url"].endswith("/admin/chat/image/")
    # send_default_pii is off: the session cookie and the user stay out of the event.
    sent = json.dumps(event)
    assert admin_session.cookies["sessionid"] not in sent and admin_session.cookies["csrftoken"] not in sent
    assert "cookies" not in event["request"] and "user" not in event

    [failed] = _wait_for_lines(
        stack, lambda line: line["event"] == "request_failed" and line.get("request_id") == request_id
    )
    assert failed["sentry_id"] == event["event_id"]
    assert (failed["status"], failed["method"], failed["path"]) == (500, "GET", "/admin/chat/image/")
    assert failed["user_id"] == _user_id(stack) and "UndefinedTable" in failed["exception"]


def test_a_malformed_request_id_reaching_gunicorn_directly_is_replaced(stack):
    marker = f"/readyz?malformed-{time.monotonic_ns()}"
    forged = "x" * 300 + ' {"event": "forged"}'
    response = requests.get(
        stack.gunicorn_url + marker, headers={"Host": "127.0.0.1", "X-Request-ID": forged}, timeout=10
    )
    assert response.status_code == 200
    [finished] = _wait_for_lines(
        stack, lambda line: line["event"] == "request_finished" and line["request"] == f"GET {marker}"
    )
    assert re.fullmatch(r"[0-9a-f-]{36}", finished["request_id"]), finished["request_id"]
