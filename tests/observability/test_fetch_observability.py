"""manage.py fetch_images in a child process: its JSON lines, and what it sends to the Sentry ingest stand-in."""

import time
import uuid

import pytest
from django.db import connection

from chat.tests.subprocess_helpers import run_manage
from devservers.s3 import ACCESS_KEY, SECRET_KEY

from .conftest import exception_types, parse_json_lines

pytestmark = pytest.mark.django_db(transaction=True)

MONITOR_SLUG = "fetch-images-under-test"
FAILING_PHOTO = 5


def _environment(*, photo_api, s3_server, bucket, dsn="") -> dict[str, str]:
    """Production settings (not the test module) with the local photo API, moto and the test database."""
    return {
        "DJANGO_SETTINGS_MODULE": "pru_app.settings",
        "DJANGO_SECRET_KEY": "observability-tests-only-" + "x" * 40,
        "DATABASE_URL": _test_database_url(),
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_S3_MAX_ATTEMPTS": "1",
        "IMAGE_API_URL": photo_api.url,
        "IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
        "IMAGE_FETCH_RETRIES": "0",
        "LOG_FORMAT": "json",
        "SENTRY_DSN": dsn,
        "SENTRY_ENVIRONMENT": "observability-test",
        "SENTRY_RELEASE": "pru_app@observability-test",
        "SENTRY_CRON_MONITOR_SLUG": MONITOR_SLUG,
    }


def _test_database_url() -> str:
    settings = connection.settings_dict
    return (
        f"postgres://{settings['USER']}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"
    )


def _fetch(environment, *extra):
    return run_manage(
        "fetch_images", "--page-size", "5", "--no-progress", *extra, env_overrides=environment, timeout=120
    )


def _log_lines(stdout: str) -> list[dict]:
    """The JSON lines of stdout; the command's own summary lines are plain text around them."""
    return parse_json_lines("\n".join(line for line in stdout.splitlines() if line.startswith("{")))


@pytest.fixture
def twelve_photos_one_missing(photo_api):
    photo_api.listing = list(range(1, 13))
    photo_api.set_photo_fault(FAILING_PHOTO, "missing")
    return photo_api


@pytest.fixture
def bucket(s3_server):
    return s3_server.create_bucket(f"observability-{uuid.uuid4().hex[:10]}")


def test_fetch_logs_one_json_line_per_event_with_the_documented_fields(twelve_photos_one_missing, s3_server, bucket):
    result = _fetch(_environment(photo_api=twelve_photos_one_missing, s3_server=s3_server, bucket=bucket))

    assert "Done" in result.stdout, result.stderr[-3000:]
    lines = _log_lines(result.stdout)
    assert not [line for line in result.stdout.splitlines() if '"event"' in line and not line.startswith("{")]
    for line in lines:
        assert {"event", "level", "logger", "timestamp"} <= set(line), line
    by_event = {}
    for line in lines:
        by_event.setdefault(line["event"], []).append(line)

    [started] = by_event["image_fetch.started"]
    assert started["source"] == twelve_photos_one_missing.url and started["page_size"] == 5
    assert [page["offset"] for page in by_event["image_fetch.page"]][:3] == [0, 5, 10]
    assert sum(page["count"] for page in by_event["image_fetch.page"]) == 12
    stored = by_event["image_fetch.stored"]
    assert len(stored) == 11
    for line in stored:
        assert isinstance(line["image_id"], int) and line["key"] and line["bytes"] > 0 and line["ms"] >= 0
    [failed] = by_event["image_fetch.failed"]
    assert failed["level"] == "warning" and failed["source_url"].endswith(f"/{FAILING_PHOTO}.jpeg") and failed["reason"]
    assert "sentry_id" not in failed  # no DSN, no event
    [finished] = by_event["image_fetch.finished"]
    assert (finished["stored"], finished["failed"], finished["seen"]) == (11, 1, 12)
    assert finished["seconds"] > 0


def test_fetch_is_one_transaction_with_page_download_and_upload_spans_and_cron_check_ins(
    twelve_photos_one_missing, s3_server, bucket, sentry_ingest
):
    environment = _environment(
        photo_api=twelve_photos_one_missing, s3_server=s3_server, bucket=bucket, dsn=sentry_ingest.dsn
    )
    environment["SENTRY_CRON_SCHEDULE"] = "17 * * * *"
    result = _fetch(environment)
    assert "Done" in result.stdout, result.stderr[-3000:]

    assert sentry_ingest.wait_for(lambda server: server.transactions and len(server.check_ins) >= 2, timeout=15)
    [transaction] = sentry_ingest.transactions
    trace = transaction["contexts"]["trace"]
    assert transaction["transaction"] == "fetch_images" and trace["op"] == "task.fetch_images"
    assert transaction["environment"] == "observability-test" and transaction["release"] == "pru_app@observability-test"
    assert trace["data"]["stored"] == 11 and trace["data"]["failed"] == 1
    spans = transaction["spans"]
    ops = [span["op"] for span in spans]
    assert ops.count("photo_api.page") >= 3
    assert ops.count("image.download") == 12
    assert ops.count("storage.upload") == 11
    assert {span["trace_id"] for span in spans} == {trace["trace_id"]}

    check_ins = sentry_ingest.check_ins
    assert [(check_in["monitor_slug"], check_in["status"]) for check_in in check_ins] == [
        (MONITOR_SLUG, "in_progress"),
        (MONITOR_SLUG, "ok"),
    ]
    assert check_ins[0]["check_in_id"] == check_ins[1]["check_in_id"] and check_ins[1]["duration"] > 0
    assert check_ins[1]["environment"] == "observability-test"
    # The schedule travels with the check-ins, so the first one creates the monitor.
    assert check_ins[0]["monitor_config"]["schedule"] == {"type": "crontab", "value": "17 * * * *"}


def test_a_failed_photo_is_one_warning_event_with_its_source_url_and_reason(
    twelve_photos_one_missing, s3_server, bucket, sentry_ingest
):
    environment = _environment(
        photo_api=twelve_photos_one_missing, s3_server=s3_server, bucket=bucket, dsn=sentry_ingest.dsn
    )
    result = _fetch(environment)

    assert sentry_ingest.wait_for(lambda server: server.transactions, timeout=15), result.stderr[-3000:]
    [event] = sentry_ingest.events
    assert event["level"] == "warning" and event["message"] == "image_fetch.failed"
    assert event["contexts"]["log"]["source_url"].endswith(f"/{FAILING_PHOTO}.jpeg")
    assert event["contexts"]["log"]["reason"]
    # Grouped by the kind of failure: one issue for every 404, another for every non-image…
    assert event["fingerprint"] == ["image_fetch.failed", "download failed"]
    assert event["tags"]["kind"] == "download failed"
    assert event["contexts"]["trace"]["trace_id"] == sentry_ingest.transactions[0]["contexts"]["trace"]["trace_id"]
    [failed_line] = [line for line in _log_lines(result.stdout) if line["event"] == "image_fetch.failed"]
    assert failed_line["sentry_id"] == event["event_id"]


def test_an_aborted_fetch_is_one_error_event_and_an_error_check_in(photo_api, s3_server, sentry_ingest):
    # A bucket that does not exist: storage answers, and refuses.
    environment = _environment(
        photo_api=photo_api, s3_server=s3_server, bucket=f"missing-{uuid.uuid4().hex[:8]}", dsn=sentry_ingest.dsn
    )
    result = _fetch(environment)

    assert result.returncode != 0 and "Object storage unavailable" in result.stderr
    assert sentry_ingest.wait_for(lambda server: len(server.check_ins) >= 2 and server.events, timeout=15)
    time.sleep(0.5)  # anything sent twice would have arrived with the rest: the process has exited
    [event] = sentry_ingest.events
    assert event["level"] == "error" and "StorageUnavailable" in exception_types(event)
    assert [check_in["status"] for check_in in sentry_ingest.check_ins] == ["in_progress", "error"]
    [transaction] = sentry_ingest.transactions
    assert transaction["contexts"]["trace"]["status"] == "internal_error"
    assert event["contexts"]["trace"]["trace_id"] == transaction["contexts"]["trace"]["trace_id"]


def test_without_a_dsn_nothing_reaches_sentry(twelve_photos_one_missing, s3_server, bucket, sentry_ingest):
    environment = _environment(photo_api=twelve_photos_one_missing, s3_server=s3_server, bucket=bucket, dsn="")
    result = _fetch(environment)
    assert "Done" in result.stdout, result.stderr[-3000:]

    probe = "import sentry_sdk; print('active' if sentry_sdk.get_client().is_active() else 'inactive')"
    assert run_manage("shell", "--no-imports", "-c", probe, env_overrides=environment).stdout.strip() == "inactive"
    # Nothing listens on port 9: the SDK initialises without connecting anywhere.
    with_dsn = {**environment, "SENTRY_DSN": "http://public@127.0.0.1:9/1"}
    assert run_manage("shell", "--no-imports", "-c", probe, env_overrides=with_dsn).stdout.strip() == "active"
    time.sleep(0.5)
    assert sentry_ingest.items == [] and sentry_ingest.rejected == []
