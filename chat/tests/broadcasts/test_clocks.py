"""Two clocks (issue 16, finding 4): times the database compares come from the database's clock.

Real manage.py processes run under Debian's `faketime`, their clock ahead of PostgreSQL's.
"""

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from chat.broadcasts.chunks import chunk_run
from chat.broadcasts.sending import broadcast_create
from chat.broadcasts.sweeper import broadcasts_sweep
from chat.models import Broadcast, BroadcastStatus, ChunkStatus, Message
from chat.tests.race_gates import raw_connection
from chat.tests.subprocess_helpers import PROJECT_ROOT

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("faketime") is None, reason="Debian's faketime is not installed (bin/setup-dev)"),
]


def _manage_shell_ahead(code: str, *, ahead: str, **env_overrides) -> subprocess.CompletedProcess:
    """`manage.py shell -c code` on this test database, its clock `ahead` (faketime's +5s) of the database's."""
    database = connection.settings_dict
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_", "SENTRY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="pru_app.settings",
        DJANGO_SECRET_KEY="clock-tests-only-" + "x" * 40,
        DATABASE_URL=f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}",
        CELERY_BROKER_URL="",
        LOG_FORMAT="json",
        # Only the wall clock moves: timeouts and sleeps keep running at the real pace.
        FAKETIME_DONT_FAKE_MONOTONIC="1",
        **env_overrides,
    )
    return subprocess.run(
        ["faketime", "-f", ahead, sys.executable, "manage.py", "shell", "-c", code],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_faked_process_really_runs_ahead_of_the_database():
    result = _manage_shell_ahead(
        "from django.db import connection\n"
        "from django.utils import timezone\n"
        "cursor = connection.cursor(); cursor.execute('SELECT now()')\n"
        "print((timezone.now() - cursor.fetchone()[0]).total_seconds())",
        ahead="+30s",
    )
    assert result.returncode == 0, result.stderr
    assert 25 < float(result.stdout.strip().splitlines()[-1]) < 40


def test_a_send_from_an_app_server_whose_clock_runs_ahead_closes_succeeded(make_user, make_image):
    chats = [make_user().chat for _ in range(3)]
    image = make_image()
    result = _manage_shell_ahead(
        "from chat.broadcasts.sending import broadcast_send\n"
        f"outcome = broadcast_send(image_ids=[{image.pk}])\n"
        "print(outcome.broadcast.status)",
        ahead="+5s",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    broadcast = Broadcast.objects.get()
    assert broadcast.status == BroadcastStatus.SUCCEEDED, broadcast.error
    assert broadcast.created_count == len(chats) == Message.objects.count()
    assert broadcast.finished_at >= broadcast.started_at


def test_a_sweeper_whose_clock_runs_ahead_requeues_nothing_that_is_still_moving(make_user, make_image):
    for _ in range(2):
        make_user()
    broadcast = broadcast_create(image_ids=[make_image().pk])
    # Just recorded, by the database's clock: not stalled for BROADCAST_STALL_SECONDS (120 s).
    result = _manage_shell_ahead(
        "import json\n"
        "from chat.broadcasts.sweeper import broadcasts_sweep\n"
        "print(json.dumps(broadcasts_sweep().as_dict()))",
        ahead="+600s",
        BROADCAST_STALL_SECONDS="120",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["requeued_broadcasts"] == []
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.QUEUED and not Message.objects.exists()


def test_one_broadcast_the_sweeper_cannot_close_does_not_stop_it_sweeping_the_others(
    make_user, make_image, settings, caplog
):
    settings.CELERY_BROKER_URL = ""
    settings.BROADCAST_STALL_SECONDS = 60
    for _ in range(2):
        make_user()
    image = make_image()
    bad = broadcast_create(image_ids=[image.pk])
    chunk_run(chunk_id=bad.chunks.get().pk, owner="died-before-closing", close=False)
    stalled = broadcast_create(image_ids=[make_image().pk])
    Broadcast.objects.filter(pk=stalled.pk).update(started_at=timezone.now() - timedelta(seconds=61))
    holder = raw_connection()
    try:
        with holder.cursor() as cursor:
            # One row the database refuses to close (a bad row, as a legacy start "in the future" was).
            cursor.execute(
                "CREATE FUNCTION refuse_close() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'this broadcast cannot be closed'; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_close BEFORE UPDATE ON chat_broadcast FOR EACH ROW "
                f"WHEN (NEW.id = {bad.pk} AND NEW.status IN ('succeeded', 'failed')) EXECUTE FUNCTION refuse_close()"
            )
        report = broadcasts_sweep()
    finally:
        with holder.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS refuse_close ON chat_broadcast")
            cursor.execute("DROP FUNCTION IF EXISTS refuse_close()")
        holder.close()
    assert report.failed_broadcasts == [bad.pk]
    assert report.requeued_broadcasts == [stalled.pk]
    stalled.refresh_from_db()
    assert stalled.status == BroadcastStatus.SUCCEEDED
    assert "broadcast.sweep_failed" in caplog.text
    # The bad one is still open, its chunk done: the next sweep closes it once the database lets it.
    assert broadcasts_sweep().closed_broadcasts == [bad.pk]
    assert set(bad.chunks.values_list("status", flat=True)) == {ChunkStatus.SUCCEEDED}
