"""Debian's Prometheus on a loopback port, scraping the no-Docker stack with pru_app's alert rules."""

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests
import yaml

from deploy.ports import free_port
from devservers.processes import stop_process, wait_until_http_ready

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RULES = PROJECT_ROOT / "deploy" / "observability" / "prometheus" / "alerts.yml"


class PrometheusError(RuntimeError):
    """Prometheus is not installed, refused its configuration, or did not become ready."""


class PrometheusServer:
    """prometheus --config.file=<run dir>/prometheus.yml; .query() and .alerts() ask its HTTP API."""

    def __init__(
        self,
        *,
        run_dir: Path,
        targets: Mapping[str, Sequence[str]],
        rule_files: Sequence[Path] = (RULES,),
        port: int = 0,
        scrape_interval: str = "15s",
        evaluation_interval: str = "15s",
        ready_timeout: float = 60.0,
    ):
        self.run_dir = Path(run_dir).resolve()
        self.targets = {job: list(addresses) for job, addresses in targets.items()}
        self.rule_files = [Path(path).resolve() for path in rule_files]
        self.port = port or free_port()
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.ready_timeout = ready_timeout
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "prometheus.log"

    def config(self) -> dict:
        return {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.evaluation_interval},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": addresses}]} for job, addresses in self.targets.items()
            ],
        }

    def start(self) -> "PrometheusServer":
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not Path(binary).exists():
            raise PrometheusError("prometheus is not installed: run bin/setup-dev (Debian's prometheus package)")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config = self.run_dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        checked = subprocess.run(
            ["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=60
        )
        if checked.returncode != 0:
            raise PrometheusError(f"promtool check config:\n{checked.stdout}{checked.stderr}")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.run_dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1d",
                ],
                cwd=self.run_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_process(process)

    def __enter__(self) -> "PrometheusServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- its HTTP API -------------------------------------------------------------------------------
    def api(self, path: str, **params) -> dict:
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expression: str) -> list[dict]:
        return self.api("query", query=expression)["result"]

    def alerts(self) -> list[dict]:
        return self.api("alerts")["alerts"]

    def targets_health(self) -> dict[str, str]:
        return {target["labels"]["job"]: target["health"] for target in self.api("targets")["activeTargets"]}

    def wait_for(self, predicate, *, timeout: float = 60.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise PrometheusError(f"{what} not met after {timeout}s\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.5)

    def _wait_until_ready(self) -> None:
        wait_until_http_ready(
            name="prometheus",
            url=self.url + "/-/ready",
            process=self._process,
            timeout=self.ready_timeout,
            error=PrometheusError,
            log_tail=lambda: self.log_path.read_text()[-3000:],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Debian's Prometheus against given targets.")
    parser.add_argument("--port", type=int, default=9090)
    parser.add_argument("--run-dir", type=Path, default=PROJECT_ROOT / ".run" / "prometheus")
    parser.add_argument("--web", required=True, help="Gunicorn's host:port (its /metrics)")
    parser.add_argument("--worker", help="the Celery worker's metrics host:port")
    options = parser.parse_args()
    targets = {"web": [options.web]} | ({"worker": [options.worker]} if options.worker else {})
    with PrometheusServer(run_dir=options.run_dir, targets=targets, port=options.port) as server:
        print(f"Prometheus {server.url}", flush=True)
        try:
            while server._process is not None and server._process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
