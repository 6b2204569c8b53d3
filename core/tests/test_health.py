"""/healthz answers before the middleware stack; /readyz goes through it."""

import pytest
import structlog
from django.test import Client


def test_healthz_answers_a_probe_by_ip_whatever_host_header_it_sends(settings):
    settings.ALLOWED_HOSTS = ["pru.example.com"]
    response = Client().get("/healthz", HTTP_HOST="10.0.0.7:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-store" in response["Cache-Control"]


def test_healthz_writes_no_request_log_line_and_touches_no_database():
    # No django_db mark: pytest-django raises on any query (a session or user lookup included).
    with structlog.testing.capture_logs() as lines:
        response = Client().get("/healthz", HTTP_HOST="127.0.0.1")
    assert response.status_code == 200
    assert not [line for line in lines if line["event"].startswith("request_")], lines


def test_healthz_takes_get_only():
    assert Client().post("/healthz", HTTP_HOST="127.0.0.1").status_code == 405


@pytest.mark.django_db
def test_other_paths_still_pass_through_the_whole_stack(settings):
    settings.ALLOWED_HOSTS = ["pru.example.com"]
    # The host check (CommonMiddleware) still refuses what /healthz lets through.
    assert Client().get("/readyz", HTTP_HOST="10.0.0.7:8000").status_code == 400
