"""/readyz is this host's only, and no client decides what Sentry traces: through real nginx and Gunicorn."""

import secrets
import time

import pytest
import requests

from .conftest import OUTSIDE_ADDRESS, TRUSTED_PROXY_ADDRESS, client_from

pytestmark = pytest.mark.stack


def _reached_gunicorn(stack, marker: str) -> bool:
    """Whether a request carrying marker got to Gunicorn: a later one from this host shows the log is written."""
    after = f"after-{secrets.token_hex(4)}"
    requests.get(f"{stack.url}/readyz?{after}", timeout=10)
    deadline = time.monotonic() + 5
    while after not in stack.log_text("gunicorn") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert after in stack.log_text("gunicorn"), "Gunicorn's access log is not being written"
    return marker in stack.log_text("gunicorn")


def test_readyz_answers_this_host_and_the_compose_healthcheck(edge_stack):
    assert requests.get(edge_stack.url + "/readyz", timeout=10).status_code == 200
    # Compose's web healthcheck (and anything on the compose network) asks Gunicorn directly.
    assert requests.get(edge_stack.gunicorn_url + "/readyz", timeout=10).status_code == 200


def test_readyz_from_outside_is_refused_by_nginx_and_names_nothing(edge_stack):
    marker = f"outside-{secrets.token_hex(4)}"
    response = client_from(OUTSIDE_ADDRESS).get(f"{edge_stack.url}/readyz?{marker}", timeout=10)
    assert response.status_code == 403
    for word in ("database", "storage", "failed", "status"):
        assert word not in response.text.lower()
    assert not _reached_gunicorn(edge_stack, marker)  # no query, no bucket HEAD was paid for it
    # The liveness probe is unchanged.
    assert client_from(OUTSIDE_ADDRESS).get(edge_stack.url + "/healthz", timeout=10).status_code == 200


def test_readyz_through_the_trusted_proxy_is_refused_even_when_the_client_claims_loopback(edge_stack):
    # The terminator appends the peer it saw; the client wrote the first entry itself.
    proxy = client_from(TRUSTED_PROXY_ADDRESS)
    response = proxy.get(edge_stack.url + "/readyz", headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.9"}, timeout=10)
    assert response.status_code == 403


def _forged_trace_headers() -> tuple[str, dict]:
    trace_id = secrets.token_hex(16)
    return trace_id, {
        "sentry-trace": f"{trace_id}-{secrets.token_hex(8)}-1",
        "baggage": f"sentry-trace_id={trace_id},sentry-sampled=true,sentry-sample_rate=1.0,sentry-sample_rand=0.01",
    }


def _request_transactions(ingest) -> list[dict]:
    return [
        item for item in ingest.transactions if item.get("contexts", {}).get("trace", {}).get("op") == "http.server"
    ]


def test_a_client_sent_sampled_flag_creates_no_transaction_at_a_zero_sample_rate(edge_stack, edge_sentry):
    forged_ids = []
    # Through nginx (which drops the headers) and straight to Gunicorn (Sentry must ignore them).
    for base in (edge_stack.url, edge_stack.gunicorn_url):
        trace_id, headers = _forged_trace_headers()
        forged_ids.append(trace_id)
        for path in ("/admin/login/", "/readyz"):
            assert requests.get(base + path, headers=headers | {"Host": "localhost"}, timeout=10).status_code == 200

    def forged(ingest):
        return [
            item
            for item in ingest.transactions
            if item.get("contexts", {}).get("trace", {}).get("trace_id") in forged_ids
        ]

    # The SDK sends from a background thread right after the response; give it the time.
    assert not edge_sentry.wait_for(lambda ingest: forged(ingest) or _request_transactions(ingest), timeout=3)
    assert _request_transactions(edge_sentry) == []
