"""Fixtures for the observability tests: the local Sentry ingest server and an in-process Sentry client."""

import json

import pytest
import sentry_sdk

from devservers.sentry_ingest import SentryIngestServer
from pru_app.sentry_setup import _traces_sampler, drop_already_reported


@pytest.fixture
def sentry_ingest():
    """Sentry's ingest endpoint stand-in on a loopback port."""
    with SentryIngestServer() as server:
        yield server


@pytest.fixture
def in_process_sentry(sentry_ingest):
    """A real SDK client in this process sending to the ingest server, with pru_app's event policy.

    Without the framework integrations: those patch Django and Celery for the whole session, so
    the tests that need them run the app in a child process instead.
    """
    sentry_sdk.init(
        dsn=sentry_ingest.dsn,
        before_send=drop_already_reported,
        traces_sampler=_traces_sampler(default_rate=0.0, job_rate=1.0),
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    try:
        with sentry_sdk.isolation_scope():
            yield sentry_ingest
    finally:
        sentry_sdk.flush(timeout=5)
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


def flush_and_wait(ingest, predicate=lambda server: True, timeout: float = 10.0) -> None:
    """The SDK sends from a background thread: flush it, then wait for what the test expects."""
    sentry_sdk.flush(timeout=5)
    assert ingest.wait_for(predicate, timeout=timeout), f"ingest received only {[i.type for i in ingest.items]}"


def parse_json_lines(text: str) -> list[dict]:
    """Every non-empty line must be one JSON object; returns them in order."""
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError as error:
            raise AssertionError(f"line {number} is not JSON: {line[:300]!r}") from error
        assert isinstance(parsed, dict), f"line {number} is not a JSON object: {line[:300]!r}"
        lines.append(parsed)
    return lines


def exception_types(event: dict) -> list[str]:
    return [value["type"] for value in event.get("exception", {}).get("values", [])]
