"""bin/audit_pypi_projects.py against a local stand-in of PyPI's project pages: it finds what it should, and fails loudly."""

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.deploy_files import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "bin" / "audit_pypi_projects.py"
PAGES = {
    # Newest release vulnerable, nothing fixes it yet.
    "leaky": {"info": {"version": "2.0"}, "vulnerabilities": [{"id": "PYSEC-1", "aliases": ["CVE-1"], "fixed_in": []}]},
    # Newest release fine, an advisory fixed in 1.5: a pin at 1.2 is affected, one at 1.5 is not.
    "fixed": {"info": {"version": "1.6"}, "vulnerabilities": [{"id": "GHSA-2", "fixed_in": ["1.5"]}]},
    "clean": {"info": {"version": "3.0"}, "vulnerabilities": []},
}


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self):
        name = self.path.split("/")[2]
        if name not in PAGES:
            self.send_error(404)
            return
        body = json.dumps(PAGES[name]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def pypi():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/pypi/{{name}}/json"
    server.shutdown()
    server.server_close()


def _audit(tmp_path, url, pins, *ignored):
    lock = tmp_path / "requirements.txt"
    lock.write_text("".join(f"{pin} \\\n    --hash=sha256:{'0' * 64}\n" for pin in pins))
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--timeout", "5", str(lock), *(f"--ignore={advisory}" for advisory in ignored)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYPI_PROJECT_URL": url, "PATH": "/usr/bin:/bin"},
    )


def test_a_pin_with_a_known_vulnerability_fails_the_audit_and_is_named(tmp_path, pypi):
    result = _audit(tmp_path, pypi, ["leaky==2.0", "fixed==1.2", "clean==3.0"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "VULNERABLE leaky 2.0: PYSEC-1 (no fixed release)" in result.stdout
    assert "VULNERABLE fixed 1.2: GHSA-2 (1.5)" in result.stdout
    assert "clean" not in result.stdout.split("known vulnerabilities")[1].split("behind")[0]


def test_pins_past_every_fix_pass_and_pins_behind_the_newest_release_are_listed(tmp_path, pypi):
    result = _audit(tmp_path, pypi, ["fixed==1.5", "clean==3.0"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "behind fixed 1.5 (newest 1.6)" in result.stdout


def test_an_advisory_accepted_on_purpose_is_not_reported(tmp_path, pypi):
    assert _audit(tmp_path, pypi, ["leaky==2.0"], "CVE-1").returncode == 0


def test_no_answer_means_nothing_was_audited_and_fails(tmp_path):
    result = _audit(tmp_path, "http://127.0.0.1:9/pypi/{name}/json", ["clean==3.0"])
    assert result.returncode == 2 and "did not answer" in result.stderr
