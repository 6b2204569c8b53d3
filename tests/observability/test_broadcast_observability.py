"""A broadcast run in a child process with Sentry on: its log lines, its transaction, its single error event."""

import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from chat.models import Image, ImageStatus
from chat.tests.subprocess_helpers import run_manage

from .conftest import exception_types, parse_json_lines

pytestmark = pytest.mark.django_db(transaction=True)

RUN_BROADCAST = """
from django.contrib.auth import get_user_model
from chat.broadcasts.sending import broadcast_create, broadcast_run
staff = get_user_model().objects.get(username="staff")
broadcast_run(broadcast=broadcast_create(image_ids={image_ids}, sent_by=staff, chunk_messages=4))
"""


@pytest.fixture
def three_chats_two_images():
    users = [get_user_model().objects.create_user(username=name, password="pw-tests-only") for name in ("a", "b")]
    staff = get_user_model().objects.create_user(username="staff", password="pw-tests-only", is_staff=True)
    images = [
        Image.objects.create(
            photo_id=number,
            source_url=f"https://photos.test/{number}.jpeg",
            title=f"Photo {number}",
            status=ImageStatus.STORED,
            file=f"images/{number}.jpeg",
            stored_at=timezone.now(),
        )
        for number in (1, 2)
    ]
    return [*users, staff], staff, images


def _run_broadcast(images, *, dsn):
    settings = connection.settings_dict
    database_url = (
        f"postgres://{settings['USER']}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"
    )
    code = RUN_BROADCAST.format(image_ids=[image.pk for image in images])
    return run_manage(
        "shell",
        "--no-imports",
        "-c",
        code,
        env_overrides={
            "DJANGO_SETTINGS_MODULE": "pru_app.settings",
            "DJANGO_SECRET_KEY": "observability-tests-only-" + "x" * 40,
            "DATABASE_URL": database_url,
            "LOG_FORMAT": "json",
            "SENTRY_DSN": dsn,
            "SENTRY_ENVIRONMENT": "broadcast-test",
        },
    )


def test_a_broadcast_is_a_transaction_with_its_counts_and_two_log_lines(three_chats_two_images, sentry_ingest):
    _users, staff, images = three_chats_two_images
    result = _run_broadcast(images, dsn=sentry_ingest.dsn)
    assert result.returncode == 0, result.stderr[-3000:]

    lines = {line["event"]: line for line in parse_json_lines(result.stdout)}
    started, finished = lines["broadcast.started"], lines["broadcast.finished"]
    assert started["staff_user_id"] == staff.pk and started["images"] == 2
    assert (finished["chats"], finished["created"], finished["skipped"], finished["images"]) == (3, 6, 0, 2)
    assert finished["broadcast_id"] == started["broadcast_id"] and finished["ms"] >= 0

    assert sentry_ingest.wait_for(lambda server: server.transactions, timeout=15)
    [transaction] = sentry_ingest.transactions
    assert transaction["transaction"] == "broadcast"
    trace = transaction["contexts"]["trace"]
    assert trace["op"] == "task.broadcast" and trace["status"] == "ok"
    data = trace["data"]
    assert data["broadcast_id"] == finished["broadcast_id"] and data["staff_user_id"] == staff.pk
    assert (data["images"], data["chats"], data["created"], data["skipped"], data["status"]) == (
        2,
        3,
        6,
        0,
        "succeeded",
    )
    assert transaction["tags"]["broadcast_id"] == str(finished["broadcast_id"])
    assert sentry_ingest.events == []


def test_a_failing_broadcast_is_one_error_event_though_three_places_see_the_exception(
    three_chats_two_images, sentry_ingest
):
    users, _staff, images = three_chats_two_images
    last_chat = max(user.chat.pk for user in users)
    # A real database error in the second batch: a CHECK refuses its chats.
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE chat_message ADD CONSTRAINT refuse_last_chat CHECK (chat_id < {last_chat})")
    try:
        result = _run_broadcast(images, dsn=sentry_ingest.dsn)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE chat_message DROP CONSTRAINT refuse_last_chat")

    # The log line, the transaction wrapper and the uncaught-exception hook each saw it.
    assert result.returncode != 0 and "BroadcastError" in result.stderr
    assert sentry_ingest.wait_for(lambda server: server.transactions and server.events, timeout=15)
    time.sleep(0.5)  # the process has exited: anything sent twice is here by now
    [event] = sentry_ingest.events
    assert event["message"] == "broadcast.failed" and "CheckViolation" in exception_types(event)
    assert event["tags"]["broadcast_id"]
    [transaction] = sentry_ingest.transactions
    trace = transaction["contexts"]["trace"]
    assert trace["status"] == "internal_error" and trace["data"]["status"] == "failed"
    assert trace["data"]["created"] == 4 and event["contexts"]["trace"]["trace_id"] == trace["trace_id"]
    [failed_line] = [line for line in parse_json_lines(result.stdout) if line["event"] == "broadcast.failed"]
    assert failed_line["sentry_id"] == event["event_id"] and "refuse_last_chat" in failed_line["exception"]
