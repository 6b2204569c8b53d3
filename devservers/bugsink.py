"""Bugsink, a Sentry-compatible error tracker, on a loopback port from its own virtualenv (bin/setup-bugsink).

It keeps its SQLite databases under its run directory; start() migrates them, creates a superuser (for the
UI), a full-access API token, a team and a project, and reads the project's DSN from Bugsink's own API.
"""

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import requests

from deploy.ports import free_port
from devservers.processes import stop_process, wait_until_http_ready

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUGSINK_VENV = PROJECT_ROOT / ".venv-bugsink"
SETUP_SCRIPT = PROJECT_ROOT / "bin" / "setup-bugsink"


class BugsinkError(RuntimeError):
    """Bugsink did not install, migrate, start or answer as expected."""


class BugsinkServer:
    """Bugsink on 127.0.0.1:<port>; .dsn is its project's DSN, .api(...) asks its REST API with the token."""

    def __init__(
        self,
        *,
        run_dir: Path,
        port: int = 0,
        project_name: str = "pru_app",
        admin_email: str = "admin@example.com",
        admin_password: str = "",
        ready_timeout: float = 120.0,
    ):
        self.run_dir = Path(run_dir).resolve()
        self.port = port or free_port()
        self.project_name = project_name
        self.admin_email = admin_email
        self.admin_password = admin_password
        self.ready_timeout = ready_timeout
        self.token = ""
        self.dsn = ""
        self.project_id = ""
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "bugsink.log"

    def start(self) -> "BugsinkServer":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        install_bugsink()
        self._write_config()
        self._manage("migrate", "--noinput")
        self._manage("migrate", "--noinput", "--database", "snappea")
        self._create_superuser()
        self.token = self._manage("create_auth_token").stdout.strip().splitlines()[-1]
        self._spawn()
        try:
            self._wait_until_ready()
            self._ensure_project()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_process(process)

    def __enter__(self) -> "BugsinkServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- its REST API -----------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        response = requests.request(
            method,
            f"{self.url}/api/canonical/0/{path.lstrip('/')}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
            **kwargs,
        )
        if response.status_code >= 400:
            raise BugsinkError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response

    def issues(self, *, query: str = "") -> list[dict]:
        """The project's issues (newest first); query filters titles and `tag:value` pairs."""
        params = {"project": self.project_id, "sort": "digest_order", "order": "desc"}
        if query:
            params["q"] = query
        return self.api("GET", "issues/", params=params).json()["results"]

    def issue_tags(self, issue_id: str) -> dict[str, set[str]]:
        """Every tag key of an issue with the values its events carried."""
        tags: dict[str, set[str]] = {}
        for entry in self.api("GET", f"issues/{issue_id}/tags/").json()["results"]:
            tags.setdefault(entry["key"], set()).add(entry["value"])
        return tags

    def wait_for_issue(self, *, query: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = self.issues(query=query)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise BugsinkError(f"no issue matches {query!r} after {timeout}s; issues: {self.issues()}")
            time.sleep(0.5)

    # --- internals ----------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_"))}
        env.update(
            PYTHONPATH=str(self.run_dir),
            DJANGO_SETTINGS_MODULE="bugsink_conf",
            DATABASE_PATH=str(self.run_dir / "db.sqlite3"),
            SNAPPEA_DATABASE_PATH=str(self.run_dir / "snappea.sqlite3"),
            PYTHONUNBUFFERED="1",
        )
        return env

    def _write_config(self) -> None:
        config = self.run_dir / "bugsink_conf.py"
        if not config.exists():
            subprocess.run(
                [
                    str(BUGSINK_VENV / "bin" / "bugsink-create-conf"),
                    "--template",
                    "local",
                    "--output-file",
                    str(config),
                ],
                check=True,
                capture_output=True,
                cwd=self.run_dir,
                timeout=60,
            )
        # The port is part of BASE_URL (the DSNs it hands out): rewritten on every start.
        text = config.read_text()
        text = _replace_base_url(text, self.url)
        config.write_text(text)

    def _manage(self, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(BUGSINK_VENV / "bin" / "bugsink-manage"), *args],
            cwd=self.run_dir,
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise BugsinkError(f"bugsink-manage {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result

    def _create_superuser(self) -> None:
        # Kept in the run directory: the user exists from the first start on, with this password.
        password_file = self.run_dir / "admin_password"
        if not password_file.exists():
            password_file.write_text(self.admin_password or secrets.token_urlsafe(16))
            password_file.chmod(0o600)
        self.admin_password = password_file.read_text().strip()
        result = subprocess.run(
            [str(BUGSINK_VENV / "bin" / "bugsink-manage"), "prestart"],
            cwd=self.run_dir,
            env={**self._env(), "CREATE_SUPERUSER": f"{self.admin_email}:{self.admin_password}"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise BugsinkError(f"bugsink-manage prestart failed:\n{result.stderr[-3000:]}")

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(BUGSINK_VENV / "bin" / "gunicorn"),
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    "1",
                    "--threads",
                    "4",
                    "--access-logfile",
                    "-",
                    "bugsink.wsgi",
                ],
                cwd=self.run_dir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_until_ready(self) -> None:
        wait_until_http_ready(
            name="Bugsink",
            url=self.url + "/health/ready",
            process=self._process,
            timeout=self.ready_timeout,
            error=BugsinkError,
            log_tail=self._log_tail,
        )

    def _ensure_project(self) -> None:
        projects = [p for p in self.api("GET", "projects/").json()["results"] if p["name"] == self.project_name]
        if not projects:
            teams = self.api("GET", "teams/").json()["results"]
            team = teams[0] if teams else self.api("POST", "teams/", json={"name": "operators"}).json()
            created = self.api("POST", "projects/", json={"team": team["id"], "name": self.project_name}).json()
            projects = [self.api("GET", f"projects/{created['id']}/").json()]
        self.project_id = str(projects[0]["id"])
        self.dsn = projects[0]["dsn"]

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


def _replace_base_url(config_text: str, url: str) -> str:
    lines = []
    for line in config_text.splitlines():
        if line.strip().startswith('"BASE_URL":'):
            indent = line[: len(line) - len(line.lstrip())]
            line = f'{indent}"BASE_URL": "{url}",  # rewritten by devservers/bugsink.py on each start'
        lines.append(line)
    return "\n".join(lines) + "\n"


def install_bugsink() -> None:
    """bin/setup-bugsink: its own virtualenv from requirements-bugsink.txt (quick when it is up to date)."""
    result = subprocess.run([str(SETUP_SCRIPT)], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise BugsinkError(f"bin/setup-bugsink failed:\n{result.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Bugsink on loopback and print its DSN.")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--run-dir", type=Path, default=PROJECT_ROOT / ".run" / "bugsink")
    options = parser.parse_args()
    with BugsinkServer(run_dir=options.run_dir, port=options.port) as server:
        print(f"Bugsink {server.url} (user {server.admin_email}, password {server.admin_password})", flush=True)
        print(f"SENTRY_DSN={server.dsn}", flush=True)
        try:
            while server._process is not None and server._process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
