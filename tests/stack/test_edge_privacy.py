"""/readyz is this host's only, and no client decides what Sentry traces: through real nginx and Gunicorn."""

import secrets
import time

import pytest
import requests

from .conftest import OUTSIDE_ADDRESS, TRUSTED_PROXY_ADDRESS, client_from

pytestmark = pytest.mark.stack


def _reached_gunicorn(stack, marker: str, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker in stack.log_text("gunicorn"):
            return True
        time.sleep(0.1)
    return False


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
    return [item for item in ingest.transactions if item.get("contexts", {}).get("trace", {}).get("op") == "http.server"]


@pytest.mark.parametrize("route", ["nginx", "gunicorn"])
def test_a_client_sent_sampled_flag_creates_no_transaction_at_a_zero_sample_rate(edge_stack, edge_sentry, route):
    trace_id, headers = _forged_trace_headers()
    base = edge_stack.url if route == "nginx" else edge_stack.gunicorn_url
    for path in ("/admin/login/", "/readyz"):
        assert requests.get(base + path, headers=headers | {"Host": "localhost"}, timeout=10).status_code == 200
    # The SDK sends from a background thread right after the response; give it the time.
    forged = lambda ingest: [  # noqa: E731
        item for item in ingest.transactions if item.get("contexts", {}).get("trace", {}).get("trace_id") == trace_id
    ]
    assert not edge_sentry.wait_for(lambda ingest: forged(ingest) or _request_transactions(ingest), timeout=3)
    assert _request_transactions(edge_sentry) == []
