import time

import pytest
from django.core.management import call_command

from chat.tests.subprocess_helpers import run_manage

DEBUG_ENV = {"DJANGO_SETTINGS_MODULE": "pru_app.settings", "DJANGO_DEBUG": "true"}


@pytest.mark.django_db
def test_wait_for_db_returns_once_the_database_answers(capsys):
    call_command("wait_for_db", timeout=5)
    assert "is ready" in capsys.readouterr().out


def test_wait_for_db_keeps_trying_then_fails_after_its_timeout_with_a_clear_error():
    # Port 1 on loopback: nothing listens, every attempt is refused.
    env = dict(DEBUG_ENV, DATABASE_URL="postgres://postgres@127.0.0.1:1/nothing_here")
    started = time.monotonic()
    result = run_manage("wait_for_db", "--timeout", "2", "--interval", "0.5", env_overrides=env)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert "Database 'default' still unreachable after 2s" in result.stderr
    assert result.stderr.count("retrying") >= 2
    assert elapsed >= 1.5
