"""bin/serve's runner (python -m deploy.serve): serves through nginx and stops everything on SIGTERM."""

import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from deploy.local_stack import PROJECT_ROOT, free_port
from tests.stack_support import clean_environment, stack_database

pytestmark = pytest.mark.stack


def _refuses_connections(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, int(port))) != 0


def test_runner_serves_through_nginx_then_sigterm_stops_nginx_gunicorn_and_storage(tmp_path):
    port = free_port()
    with stack_database("serve") as database_url:
        # Not bin/serve itself: its bin/setup-dev step ends stray system nginx processes.
        process = subprocess.Popen(
            [sys.executable, "-m", "deploy.serve", "--port", str(port), "--run-dir", str(tmp_path / "run")],
            cwd=PROJECT_ROOT, env=clean_environment() | {"DATABASE_URL": database_url},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            banner = ""
            deadline = time.monotonic() + 120
            while "Ctrl-C stops everything" not in banner and time.monotonic() < deadline and process.poll() is None:
                banner += process.stdout.readline()
            assert "pru_app is up" in banner, banner[-3000:]
            gunicorn = re.search(r"Gunicorn http://(127\.0\.0\.1:\d+)", banner).group(1)
            storage = re.search(r"storage http://(127\.0\.0\.1:\d+)", banner).group(1)

            response = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
            assert response.status_code == 200
            assert response.headers["Server"] == "nginx"

            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
            output = process.stdout.read()
            assert "Stopping nginx, Gunicorn and the S3 server" in output
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        for address in (f"127.0.0.1:{port}", gunicorn, storage):
            assert _refuses_connections(address), f"{address} still accepts connections"
