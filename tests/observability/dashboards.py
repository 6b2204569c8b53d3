"""Helpers of the dashboard tests: the stack with its observability parts, metrics text, the stack's database."""

import contextlib
import os
import shutil
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from deploy.ports import free_port
from devservers.bugsink import BugsinkServer
from devservers.photo_api import PhotoApiServer
from devservers.prometheus import RULES, PrometheusServer
from tests.stack_support import running_stack

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOCS_IMAGES = PROJECT_ROOT / "docs" / "images"
METRICS_DASHBOARD = PROJECT_ROOT / "deploy" / "observability" / "grafana" / "dashboards" / "pru_app_metrics.json"
# PRU_DOCS_SCREENSHOTS=1 makes the screenshot test write docs/images/ (committed) as well as the artifacts.
DOCS_SCREENSHOTS_FLAG = "PRU_DOCS_SCREENSHOTS"

BROKER_URL = "redis://127.0.0.1:6379/12"
ADMIN_USERNAME = "operator"
ADMIN_PASSWORD = "operator-password-for-tests-only"
FLOWER_USER = "flower"
FLOWER_PASSWORD = "flower-password-for-tests-only"


def samples(text: str, name: str, **labels) -> list[float]:
    """Values of every sample called `name` whose labels include `labels`."""
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items()):
                found.append(sample.value)
    return found


def sample_sum(text: str, name: str, **labels) -> float:
    return sum(samples(text, name, **labels))


def fast_rules(path: Path) -> Path:
    """The shipped rules with every `for:` cut to 0s, so an alert fires within a couple of evaluations."""
    lines = [
        line.split("for:")[0] + "for: 0s" if line.strip().startswith("for:") else line
        for line in RULES.read_text().splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def observed_stack(tmp_path_factory):
    """Bugsink, the photo API, the stack (broker, worker, beat, Flower) and Prometheus scraping it."""
    queue = f"pru-obs-{os.getpid()}-{time.monotonic_ns()}"
    with (
        PhotoApiServer(photos=6, image_size=5_000) as photo_api,
        BugsinkServer(run_dir=tmp_path_factory.mktemp("bugsink")) as bugsink,
    ):
        photo_api.set_photo_fault(3, "missing")
        overrides = {
            "SENTRY_DSN": bugsink.dsn,
            "SENTRY_ENVIRONMENT": "dashboards-test",
            "DJANGO_SUPERUSER_USERNAME": ADMIN_USERNAME,
            "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
            "DJANGO_SUPERUSER_EMAIL": "operator@example.com",
            "CELERY_BROKER_URL": BROKER_URL,
            "CELERY_TASK_DEFAULT_QUEUE": queue,
            "CELERY_WORKER_CONCURRENCY": "1",
            # Every broadcast goes to the workers, as a large one would.
            "BROADCAST_QUEUE_FROM_MESSAGES": "1",
            # No sweep during the test: the stalled broadcast must stay stalled.
            "BROADCAST_SWEEP_SECONDS": "3600",
            "IMAGE_FETCH_SCHEDULE": "",
            "IMAGE_VERIFY_SCHEDULE": "",
            "IMAGE_API_URL": photo_api.url,
            "IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS": "true",
            "IMAGE_FETCH_RETRIES": "0",
            "FLOWER_PORT": str(free_port()),
            "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}",
        }
        run_dir = tmp_path_factory.mktemp("stack")
        with running_stack(name="dashboards", run_dir=run_dir, overrides=overrides) as stack:
            prometheus = PrometheusServer(
                run_dir=tmp_path_factory.mktemp("prometheus"),
                targets={
                    "web": [stack.env["GUNICORN_BIND"]],
                    "worker": stack.worker_metrics_addresses,
                },
                rule_files=[fast_rules(run_dir / "alerts-fast.yml")],
                scrape_interval="1s",
                evaluation_interval="1s",
            )
            with prometheus:
                stack.wait_until_ready(url=stack.flower_url + "/healthcheck")
                yield stack, bugsink, prometheus, photo_api


def flower_tasks(stack) -> dict[str, dict]:
    response = requests.get(stack.flower_url + "/api/tasks", auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=10)
    response.raise_for_status()
    return response.json()


def save_screenshot(page, name: str, artifacts: Path) -> Path:
    path = artifacts / name
    page.screenshot(path=str(path), full_page=False)
    if os.environ.get(DOCS_SCREENSHOTS_FLAG):
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / name)
    return path
