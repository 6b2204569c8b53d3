"""manage.py logged: each line a command writes becomes one log event; a failure exits non-zero."""

import pytest
from django.core.management import call_command

from core.command_logging import LogLineStream


class RecordingLogger:
    def __init__(self):
        self.events = []

    def info(self, event, **fields):
        self.events.append((event, fields))


def test_partial_writes_become_one_event_per_complete_line_and_blank_lines_are_dropped():
    logger = RecordingLogger()
    stream = LogLineStream(logger, "info")
    stream.write("  Applying chat.0001_initial...")
    stream.write(" OK\n\n")
    stream.write("last line without newline")
    assert [fields["text"] for _, fields in logger.events] == ["  Applying chat.0001_initial... OK"]
    stream.close()
    assert [fields["text"] for _, fields in logger.events][-1] == "last line without newline"
    assert {event for event, _ in logger.events} == {"command.output"}


@pytest.mark.django_db
def test_logged_runs_the_command_and_exits_non_zero_with_a_log_event_when_it_fails(caplog):
    call_command("logged", "check")
    with pytest.raises(SystemExit) as exit_info:
        call_command("logged", "migrate", "no_such_app")  # CommandError: no installed app with that label
    assert exit_info.value.code == 1
    assert "command.failed" in caplog.text and "no_such_app" in caplog.text
