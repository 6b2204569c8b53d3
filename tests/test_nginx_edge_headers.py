"""What real nginx (the rendered template) forwards upstream: its own client address, scheme and request id, no client trace headers."""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy.nginx_config import write_config
from devservers.s3 import free_port
from tests.deploy_files import nginx_service_environment
from tests.stack_support import client_from

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
OUTSIDE, TRUSTED_PROXY = "127.0.0.2", "127.0.0.3"
STORED_BYTES = b"\xff\xd8\xff\xe0 not really a jpeg, only bytes nginx must not let a browser run"


class _EchoHeaders(BaseHTTPRequestHandler):
    """Gunicorn's stand-in: answers with the request headers it received, as JSON."""

    def do_GET(self):
        if self.path.startswith("/stored-images/"):
            # As Django answers for a stored image on the file system (chat/images/serving.py).
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Vary", "Cookie")
            self.send_header("X-Accel-Redirect", "/internal-media/images/1.jpeg")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({name.lower(): value for name, value in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """nginx from the template with a trusted proxy and NGINX_TRUST_FORWARDED_PROTO=on, in front of the echo."""
    echo = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHeaders)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    run_dir = tmp_path_factory.mktemp("nginx-edge")
    (run_dir / "media" / "images").mkdir(parents=True)
    (run_dir / "media" / "images" / "1.jpeg").write_bytes(STORED_BYTES)
    port = free_port()
    environment = nginx_service_environment() | {
        "NGINX_LISTEN": f"127.0.0.1:{port}",
        "NGINX_APP_UPSTREAM": f"127.0.0.1:{echo.server_address[1]}",
        "STORAGE_UPSTREAM": "127.0.0.1:9",
        "NGINX_STATIC_ROOT": str(run_dir),
        "NGINX_MEDIA_ROOT": str(run_dir / "media"),
        "NGINX_TRUSTED_PROXIES": TRUSTED_PROXY,
        "NGINX_TRUST_FORWARDED_PROTO": "on",
    }
    config = write_config(
        run_dir=run_dir / "nginx", environ=environment, as_root=os.geteuid() == 0, worker_processes="1"
    )
    nginx = subprocess.Popen(
        [NGINX, "-p", str(run_dir / "nginx"), "-c", str(config), "-e", "stderr"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert nginx.poll() is None and time.monotonic() < deadline, nginx.stderr.read() if nginx.poll() else "slow"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        echo.shutdown()


def _upstream_saw(base_url: str, source: str, headers: dict) -> dict:
    response = client_from(source).get(base_url + "/admin/", headers=headers, timeout=10)
    assert response.status_code == 200
    return response.json()


def test_client_trace_headers_never_reach_the_app(edge):
    seen = _upstream_saw(
        edge,
        OUTSIDE,
        {
            "sentry-trace": "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
            "baggage": "sentry-sampled=true",
            "X-Other": "kept",
        },
    )
    assert "sentry-trace" not in seen and "baggage" not in seen
    assert seen["x-other"] == "kept"  # other headers do pass: the check above can fail


def test_the_app_gets_the_peer_as_client_and_ignores_a_forged_chain(edge):
    seen = _upstream_saw(edge, OUTSIDE, {"X-Forwarded-For": "1.2.3.4", "X-Request-ID": "forged"})
    assert seen["x-forwarded-for"] == OUTSIDE
    assert seen["x-request-id"] != "forged" and len(seen["x-request-id"]) == 32


def test_behind_the_trusted_proxy_the_app_gets_the_client_it_forwarded(edge):
    seen = _upstream_saw(edge, TRUSTED_PROXY, {"X-Forwarded-For": "127.0.0.1, 203.0.113.7"})
    assert seen["x-forwarded-for"] == "203.0.113.7"  # the right-most untrusted entry, not the forged first


def test_only_the_trusted_proxy_may_say_the_request_was_https(edge):
    assert _upstream_saw(edge, TRUSTED_PROXY, {"X-Forwarded-Proto": "https"})["x-forwarded-proto"] == "https"
    assert _upstream_saw(edge, OUTSIDE, {"X-Forwarded-Proto": "https"})["x-forwarded-proto"] == "http"


def test_a_stored_file_from_disk_gets_our_headers_once_each_with_vary_cookie(edge):
    response = client_from(OUTSIDE).get(edge + "/stored-images/1", timeout=10)
    assert response.status_code == 200 and response.content == STORED_BYTES
    names = [name.lower() for name in response.raw.headers.keys()]  # noqa: SIM118 (every line, repeats included)
    assert len(names) == len(set(names)), names
    assert response.headers["Vary"] == "Cookie"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "camera=()" in response.headers["Permissions-Policy"]
