"""nginx takes the client address from the trusted proxies' X-Forwarded-For only: one client's burst limits no other."""

import json
import time

import pytest

from .conftest import LOGIN_BURST, TRUSTED_PROXY_ADDRESS, client_from

pytestmark = pytest.mark.stack


def _login_posts(session, url, count, **headers) -> list[int]:
    return [session.post(url + "/admin/login/", data={}, headers=headers, timeout=10).status_code for _ in range(count)]


def test_two_clients_behind_the_trusted_proxy_have_a_login_limit_each(edge_stack):
    proxy = client_from(TRUSTED_PROXY_ADDRESS)
    first, second = "198.51.100.1", "198.51.100.2"
    burst = _login_posts(proxy, edge_stack.url, LOGIN_BURST + 4, **{"X-Forwarded-For": first})
    assert 429 in burst, burst
    # The same proxy, straight after: the other client is not limited (403: no CSRF token, from Django).
    assert _login_posts(proxy, edge_stack.url, 1, **{"X-Forwarded-For": second}) == [403]
    assert _login_posts(proxy, edge_stack.url, 1, **{"X-Forwarded-For": first}) == [429]


def test_nginx_logs_the_forwarded_client_not_the_proxy(edge_stack):
    proxy = client_from(TRUSTED_PROXY_ADDRESS)
    marker = f"client-{time.monotonic_ns()}"
    proxy.get(f"{edge_stack.url}/admin/login/?{marker}", headers={"X-Forwarded-For": "203.0.113.50"}, timeout=10)
    deadline = time.monotonic() + 5
    records = []
    while not records and time.monotonic() < deadline:
        records = [
            json.loads(line)
            for line in edge_stack.log_text("nginx").splitlines()
            if line.startswith("{") and marker in line
        ]
        time.sleep(0.1)
    assert records and {record["remote_addr"] for record in records} == {"203.0.113.50"}, records


def test_an_untrusted_peer_cannot_escape_its_limit_with_a_forged_x_forwarded_for(edge_stack):
    direct = client_from("127.0.0.4")
    statuses = [
        direct.post(
            edge_stack.url + "/admin/login/", data={}, timeout=10, headers={"X-Forwarded-For": f"192.0.2.{number}"}
        ).status_code
        for number in range(LOGIN_BURST + 4)
    ]
    assert 429 in statuses, statuses
