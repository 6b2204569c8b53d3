"""manage.py verify_images in a child process: its summary, exit status, JSON lines and Sentry cron check-ins."""

import uuid

import pytest

from chat.tests.subprocess_helpers import run_manage

from .test_fetch_observability import _environment, _log_lines

pytestmark = pytest.mark.django_db(transaction=True)

VERIFY_SLUG = "verify-images-under-test"


@pytest.fixture
def fetched(photo_api, s3_server):
    """Six photos fetched by a child fetch_images into a fresh bucket; the environment both commands use."""
    photo_api.listing = list(range(1, 7))
    bucket = s3_server.create_bucket(f"verify-{uuid.uuid4().hex[:10]}")
    environment = _environment(photo_api=photo_api, s3_server=s3_server, bucket=bucket)
    result = run_manage("fetch_images", "--no-progress", env_overrides=environment, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return environment, bucket


def test_a_deleted_object_fails_the_run_with_a_summary_json_events_and_an_error_check_in(
    fetched, s3_server, sentry_ingest
):
    environment, bucket = fetched
    client = s3_server.client()
    [victim] = [item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]][:1]
    client.delete_object(Bucket=bucket, Key=victim)
    environment = {**environment, "SENTRY_DSN": sentry_ingest.dsn, "SENTRY_VERIFY_MONITOR_SLUG": VERIFY_SLUG}

    result = run_manage("verify_images", env_overrides=environment, timeout=120)
    assert result.returncode != 0
    assert "missing:        1" in result.stdout and "intact:         5" in result.stdout
    assert f"({victim}): missing: object {victim} not found" in result.stdout
    assert "1 image(s) missing or corrupt (--repair downloads them again)." in result.stderr
    by_event = {}
    for line in _log_lines(result.stdout):
        by_event.setdefault(line["event"], []).append(line)
    [missing] = by_event["image_verify.missing"]
    assert missing["key"] == victim and missing["level"] == "warning"
    [finished] = by_event["image_verify.finished"]
    assert (finished["checked"], finished["missing"], finished["intact"]) == (6, 1, 5)

    assert sentry_ingest.wait_for(lambda server: len(server.check_ins) >= 2, timeout=15)
    assert [(c["monitor_slug"], c["status"]) for c in sentry_ingest.check_ins] == [
        (VERIFY_SLUG, "in_progress"),
        (VERIFY_SLUG, "error"),
    ]

    repaired = run_manage("verify_images", "--repair", env_overrides=environment, timeout=120)
    assert repaired.returncode == 0, repaired.stderr[-3000:]
    assert "repaired:       1" in repaired.stdout and "All images intact." in repaired.stdout
