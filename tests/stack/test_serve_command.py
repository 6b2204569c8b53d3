"""bin/serve's runner (python -m devservers.serve): serves through nginx, keeps images across restarts, bin/manage acts on it."""

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


def _start_serve(*arguments, database_url):
    # Not bin/serve itself: its bin/setup-dev step ends stray system nginx processes.
    process = subprocess.Popen(
        [sys.executable, "-m", "devservers.serve", *arguments],
        cwd=PROJECT_ROOT,
        env=clean_environment() | {"DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    banner = ""
    deadline = time.monotonic() + 120
    while "Ctrl-C stops everything" not in banner and time.monotonic() < deadline and process.poll() is None:
        banner += process.stdout.readline()
    assert "pru_app is up" in banner, banner[-3000:]
    return process, banner


def _stop_serve(process) -> str:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    return process.stdout.read()


def _bin_manage(run_dir, *arguments):
    return subprocess.run(
        [str(PROJECT_ROOT / "bin" / "manage"), *arguments],
        cwd=PROJECT_ROOT,
        env=clean_environment() | {"PRU_SERVE_RUN_DIR": str(run_dir)},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_serve_keeps_images_across_a_restart_and_bin_manage_runs_commands_against_it(tmp_path):
    port, photo_port = free_port(), free_port()
    run_dir = tmp_path / "run"
    arguments = ["--port", str(port), "--run-dir", str(run_dir), "--demo", "--demo-port", str(photo_port)]
    with stack_database("serve") as database_url:
        process, banner = _start_serve(*arguments, database_url=database_url)
        try:
            gunicorn = re.search(r"Gunicorn http://(127\.0\.0\.1:\d+)", banner).group(1)
            assert f"storage files under {run_dir / 'media'} (kept across restarts)" in banner
            assert f"photo API (demo) http://127.0.0.1:{photo_port}/" in banner
            response = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
            assert response.status_code == 200 and response.headers["Server"] == "nginx"

            fetched = _bin_manage(run_dir, "fetch_images", "--no-progress", "--limit", "12")
            assert fetched.returncode == 0, fetched.stderr[-3000:]
            assert "newly stored:   12" in fetched.stdout

            output = _stop_serve(process)
            assert "Stopping nginx, Gunicorn and the storage" in output
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        for address in (f"127.0.0.1:{port}", gunicorn, f"127.0.0.1:{photo_port}"):
            assert _refuses_connections(address), f"{address} still accepts connections"
        stopped = _bin_manage(run_dir, "verify_images")
        assert stopped.returncode == 2 and "start bin/serve first" in stopped.stderr

        process, banner = _start_serve(*arguments, database_url=database_url)
        try:
            assert "All images intact." in banner and "checked:        12" in banner
            verified = _bin_manage(run_dir, "verify_images")
            assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
            again = _bin_manage(run_dir, "fetch_images", "--no-progress", "--limit", "12")
            assert "newly stored:   0" in again.stdout and "already stored: 12" in again.stdout
            _stop_serve(process)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
