"""bin/serve --observability: Bugsink as the stack's SENTRY_DSN, Prometheus scraping it, Flower beside the worker."""

import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from deploy.local_stack import PROJECT_ROOT, free_port
from tests.stack_support import clean_environment, stack_database

pytestmark = pytest.mark.stack


def test_serve_observability_runs_bugsink_prometheus_and_flower_beside_the_stack_and_stops_them(tmp_path):
    ports = {name: free_port() for name in ("nginx", "bugsink", "prometheus", "flower")}
    with stack_database("serve_observability") as database_url:
        environment = clean_environment() | {
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/11",
            "CELERY_TASK_DEFAULT_QUEUE": f"pru-serve-obs-{os.getpid()}-{time.monotonic_ns()}",
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devservers.serve",
                "--observability",
                "--run-dir",
                str(tmp_path / "serve"),
                "--port",
                str(ports["nginx"]),
                "--bugsink-port",
                str(ports["bugsink"]),
                "--prometheus-port",
                str(ports["prometheus"]),
                "--flower-port",
                str(ports["flower"]),
            ],
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            banner = ""
            deadline = time.monotonic() + 400
            while "Ctrl-C stops everything" not in banner and time.monotonic() < deadline and process.poll() is None:
                banner += process.stdout.readline()
            assert "pru_app is up" in banner, banner[-3000:]

            bugsink_url = f"http://127.0.0.1:{ports['bugsink']}"
            assert "SENTRY_DSN=http://" in banner and f"@127.0.0.1:{ports['bugsink']}/" in banner
            manage_env = (tmp_path / "serve" / "manage.env").read_text()
            assert f"@127.0.0.1:{ports['bugsink']}/" in manage_env, "the stack's SENTRY_DSN is not Bugsink's"
            assert requests.get(bugsink_url + "/health/ready", timeout=10).status_code == 200

            prometheus_url = f"http://127.0.0.1:{ports['prometheus']}"
            deadline = time.monotonic() + 90
            while True:
                targets = requests.get(prometheus_url + "/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
                health = {target["labels"]["job"]: target["health"] for target in targets}
                if health == {"web": "up", "worker": "up"} or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert health == {"web": "up", "worker": "up"}
            rules = requests.get(prometheus_url + "/api/v1/rules", timeout=10).json()["data"]["groups"]
            assert {"BroadcastStalled", "SweeperNotRunning"} <= {
                rule["name"] for group in rules for rule in group["rules"]
            }

            flower_url = f"http://127.0.0.1:{ports['flower']}"
            assert requests.get(flower_url + "/healthcheck", timeout=10).status_code == 200
            password = (tmp_path / "serve" / "flower_password").read_text().strip()
            workers = requests.get(flower_url + "/api/workers", auth=("operator", password), timeout=30)
            assert workers.status_code == 200
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=90)
        for port in ports.values():
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://127.0.0.1:{port}/", timeout=5)
