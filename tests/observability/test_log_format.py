"""LOG_FORMAT switches the same events between JSON lines and readable console lines."""

import json

from chat.tests.subprocess_helpers import run_manage

PROBE = "import structlog; structlog.get_logger('chat.images.probe').info('probe.logged', photo_id=7, key='a/b.jpeg')"


def _probe(log_format: str) -> str:
    result = run_manage(
        "shell",
        "--no-imports",
        "-c",
        PROBE,
        env_overrides={
            "DJANGO_SETTINGS_MODULE": "pru_app.settings",
            "DJANGO_SECRET_KEY": "observability-tests-only-" + "x" * 40,
            "LOG_FORMAT": log_format,
        },
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_json_format_writes_one_object_per_line_with_keyword_fields():
    [line] = [json.loads(text) for text in _probe("json").splitlines()]
    assert line["event"] == "probe.logged" and line["photo_id"] == 7 and line["key"] == "a/b.jpeg"
    assert line["level"] == "info" and line["logger"] == "chat.images.probe" and line["timestamp"].endswith("Z")


def test_console_format_is_readable_text_with_the_same_fields():
    output = _probe("console")
    assert "probe.logged" in output and "photo_id=7" in output and "key=a/b.jpeg" in output
    assert not output.lstrip().startswith("{")
