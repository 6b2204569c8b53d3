"""The dashboards on the no-Docker stack: Bugsink's issues, /metrics behind nginx, Prometheus's alerts, Flower's tasks.

One stack for the module (nginx, Gunicorn ×2, a Celery worker, beat and Flower on a Redis broker), with
Bugsink as its SENTRY_DSN and Debian's Prometheus scraping Gunicorn's and the worker's /metrics.
"""

import json
import re
import time

import psycopg2
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devservers.prometheus import RULES
from tests.browser.chromium import CHROMIUM, CHROMIUM_FLAGS, artifacts_dir
from tests.stack_support import client_from

from .dashboards import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    FLOWER_PASSWORD,
    FLOWER_USER,
    METRICS_DASHBOARD,
    flower_tasks,
    observed_stack,
    sample_sum,
    samples,
    save_screenshot,
)

pytestmark = pytest.mark.stack

CHUNK_TASK = "chat.tasks.broadcast_chunk_task"


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    with observed_stack(tmp_path_factory) as parts:
        yield parts


@pytest.fixture(scope="module")
def stack(observed):
    return observed[0]


@pytest.fixture(scope="module")
def bugsink(observed):
    return observed[1]


@pytest.fixture(scope="module")
def prometheus(observed):
    return observed[2]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def admin_session(stack):
    session = requests.Session()
    session.get(stack.url + "/admin/login/", timeout=10)
    response = session.post(
        stack.url + "/admin/login/",
        data={
            "username": ADMIN_USERNAME,
            "password": ADMIN_PASSWORD,
            "next": "/admin/",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=10,
    )
    assert "/admin/logout/" in response.text, response.text[:500]
    return session


def _sql(stack, statement: str, params=None):
    with psycopg2.connect(stack.env["DATABASE_URL"], connect_timeout=5) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else None


def _shell(stack, code: str) -> str:
    return stack.manage("shell", "--no-imports", "-c", code, timeout=120).stdout


SEED = """
from django.contrib.auth import get_user_model
from django.utils import timezone
from chat.models import Image, ImageStatus
users = get_user_model().objects
for name in {names!r}:
    users.get_or_create(username=name)
image = Image.objects.create(
    photo_id={photo_id}, source_url="https://photos.test/{photo_id}.jpeg", title="Photo {photo_id}",
    status=ImageStatus.STORED, file="images/{photo_id}.jpeg", stored_at=timezone.now(),
)
print(image.pk)
"""


def _seed_image(stack, photo_id: int, readers=("reader-a", "reader-b")) -> int:
    return int(_shell(stack, SEED.format(names=list(readers), photo_id=photo_id)).strip().splitlines()[-1])


def _send(admin_session, stack, image_id: int) -> str:
    """Staff's "send to all chats" action in the admin, as a browser posts it; returns the request id."""
    admin_session.get(stack.url + "/admin/chat/image/", timeout=10)
    response = admin_session.post(
        stack.url + "/admin/chat/image/",
        data={
            "action": "send_to_all_chats",
            "_selected_action": [str(image_id)],
            "index": "0",
            "select_across": "0",
            "csrfmiddlewaretoken": admin_session.cookies["csrftoken"],
        },
        timeout=30,
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:500]
    return response.headers["X-Request-ID"]


def _broadcast_of(stack, image_id: int) -> tuple[int, str]:
    rows = _sql(
        stack,
        "SELECT b.id, b.status FROM chat_broadcast b JOIN chat_broadcast_images bi ON bi.broadcast_id = b.id "
        "WHERE bi.image_id = %s ORDER BY b.id DESC LIMIT 1",
        [image_id],
    )
    assert rows, f"no broadcast of image {image_id}"
    return rows[0]


def _wait_for_broadcast(stack, image_id: int, statuses=("succeeded", "failed"), timeout=60) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        broadcast_id, status = _broadcast_of(stack, image_id)
        if status in statuses or time.monotonic() > deadline:
            return broadcast_id, status
        time.sleep(0.3)


def _worker_metrics(stack) -> str:
    return requests.get(stack.worker_metrics_url, timeout=10).text


def _wait_for_worker_sample(stack, name: str, minimum: float, timeout: float = 30.0, **labels) -> float:
    deadline = time.monotonic() + timeout
    while True:
        value = sample_sum(_worker_metrics(stack), name, **labels)
        if value >= minimum or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


# --- /metrics: inside only ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/metrics/", "/metrics?format=text", "/%6detrics", "//metrics"])
@pytest.mark.parametrize("source", ["127.0.0.1", "127.0.0.2"])
def test_nginx_refuses_metrics_from_outside_whatever_the_spelling(stack, path, source):
    response = client_from(source).get(stack.url + path, timeout=10)
    assert response.status_code == 403, (path, response.status_code, response.text[:200])
    assert "pru_http_request" not in response.text


def test_gunicorn_answers_metrics_to_the_inside_by_address_over_plain_http(stack):
    # Prometheus scrapes by address: no ALLOWED_HOSTS entry, no HTTPS redirect in the way.
    response = requests.get(stack.gunicorn_url + "/metrics", headers={"Host": "10.1.2.3:8000"}, timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    assert "pru_metrics_collector_up" in response.text


def test_requests_are_counted_by_route_and_status_across_every_gunicorn_worker(stack):
    def counts():
        text = requests.get(stack.gunicorn_url + "/metrics", timeout=10).text
        ok = sample_sum(text, "pru_http_request_duration_seconds_count", route="accounts/login/", status="200")
        missing = sample_sum(text, "pru_http_request_duration_seconds_count", route="<unmatched>", status="404")
        return ok, missing

    before_ok, before_missing = counts()
    for _ in range(12):  # spread over both Gunicorn processes
        assert requests.get(stack.url + "/accounts/login/", timeout=10).status_code == 200
    for number in range(3):
        assert requests.get(stack.url + f"/no-such-page-{number}", timeout=10).status_code == 404
    after_ok, after_missing = counts()
    assert (after_ok - before_ok, after_missing - before_missing) == (12, 3)
    text = requests.get(stack.gunicorn_url + "/metrics", timeout=10).text
    # The route is the URL pattern, never the path a client made up.
    assert not samples(text, "pru_http_request_duration_seconds_count", route="no-such-page-0")
    assert samples(text, "pru_http_request_duration_seconds_bucket", route="accounts/login/", le="0.25")


# --- Bugsink: a failing broadcast and a failing fetch ------------------------------------------------


def test_a_failing_broadcast_is_an_issue_in_bugsink_tagged_with_the_request_and_the_broadcast(
    stack, bugsink, admin_session
):
    image_id = _seed_image(stack, photo_id=901)
    before = sample_sum(_worker_metrics(stack), "pru_broadcast_chunks_total", outcome="failed")
    # A real database error in the worker's INSERT: a CHECK refuses this image's messages.
    _sql(stack, f"ALTER TABLE chat_message ADD CONSTRAINT refuse_image_{image_id} CHECK (image_id <> {image_id})")
    try:
        request_id = _send(admin_session, stack, image_id)
        broadcast_id, status = _wait_for_broadcast(stack, image_id)
    finally:
        _sql(stack, f"ALTER TABLE chat_message DROP CONSTRAINT refuse_image_{image_id}")
    assert status == "failed"

    issue = bugsink.wait_for_issue(query=f"request_id:{request_id}")
    tags = bugsink.issue_tags(issue["id"])
    assert tags["request_id"] == {request_id}
    assert tags["broadcast_id"] == {str(broadcast_id)}
    assert tags["environment"] == {"dashboards-test"}
    assert "refuse_image" in issue["calculated_value"] or "CheckViolation" in issue["calculated_type"], (
        issue["calculated_type"],
        issue["calculated_value"],
        tags,
    )
    # The same failure counted by the worker that ran the chunk.
    assert _wait_for_worker_sample(stack, "pru_broadcast_chunks_total", before + 1, outcome="failed") == before + 1


FETCH_FROM_A_REQUEST = """
import structlog
from pru_app.celery import app
# As a view would queue it: django-structlog hands the request id to the worker with the task.
with structlog.contextvars.bound_contextvars(request_id={request_id!r}):
    app.send_task("chat.tasks.fetch_images_task")
"""


def test_a_failing_fetch_is_an_issue_in_bugsink_tagged_with_the_request_that_queued_it(stack, bugsink):
    request_id = f"fetch-{time.monotonic_ns()}"
    _shell(stack, FETCH_FROM_A_REQUEST.format(request_id=request_id))

    issue = bugsink.wait_for_issue(query=f"request_id:{request_id}", timeout=60)
    tags = bugsink.issue_tags(issue["id"])
    assert tags["request_id"] == {request_id}
    assert tags["event"] == {"image_fetch.failed"} and tags["kind"]
    # Photo 3 answered 404; the other five were stored, and the worker counted both.
    assert _wait_for_worker_sample(stack, "pru_image_fetch_photos_total", 5, outcome="stored") == 5
    assert sample_sum(_worker_metrics(stack), "pru_image_fetch_photos_total", outcome="failed") == 1
    web = requests.get(stack.gunicorn_url + "/metrics", timeout=10).text
    assert sample_sum(web, "pru_images", status="failed") == 1


# --- Flower ------------------------------------------------------------------------------------------


def test_flower_lists_the_chunk_task_a_real_worker_ran(stack, admin_session):
    image_id = _seed_image(stack, photo_id=902)
    _send(admin_session, stack, image_id)
    broadcast_id, status = _wait_for_broadcast(stack, image_id)
    assert status == "succeeded"

    deadline = time.monotonic() + 30
    while True:
        chunk_tasks = [task for task in flower_tasks(stack).values() if task.get("name") == CHUNK_TASK]
        succeeded = [task for task in chunk_tasks if task.get("state") == "SUCCESS"]
        if succeeded or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert succeeded, chunk_tasks
    assert any(str(broadcast_id) in str(task.get("kwargs")) + str(task.get("args")) for task in succeeded), succeeded
    # Flower answers nobody without its credentials.
    assert requests.get(stack.flower_url + "/api/tasks", timeout=10).status_code == 401


# --- Prometheus ---------------------------------------------------------------------------------------

STALLED_BROADCAST = """
from chat.broadcasts.sending import broadcast_create
# Recorded with its chunks but never handed to the broker, as when the broker was down at Go.
print(broadcast_create(image_ids=[{image_id}]).pk)
"""


def test_prometheus_scrapes_the_stack_and_fires_broadcast_stalled(stack, prometheus):
    prometheus.wait_for(
        lambda: prometheus.targets_health() == {"web": "up", "worker": "up"}, what="both targets up", timeout=30
    )
    image_id = _seed_image(stack, photo_id=903)
    broadcast_id = int(_shell(stack, STALLED_BROADCAST.format(image_id=image_id)).strip().splitlines()[-1])
    # It last moved 20 minutes ago.
    _sql(stack, "UPDATE chat_broadcast SET started_at = now() - interval '20 minutes' WHERE id = %s", [broadcast_id])

    def stalled_alert():
        return [
            alert
            for alert in prometheus.alerts()
            if alert["labels"]["alertname"] == "BroadcastStalled"
            and alert["labels"].get("broadcast_id") == str(broadcast_id)
            and alert["state"] == "firing"
        ]

    [alert] = prometheus.wait_for(stalled_alert, what="BroadcastStalled firing", timeout=30)
    assert f"resume_broadcasts --id {broadcast_id}" in alert["annotations"]["runbook"]
    # The gauges it rests on, and the queue depth read from Redis, as Prometheus stored them.
    [pending] = prometheus.query('pru_broadcast_chunks{status="pending"}')
    assert float(pending["value"][1]) >= 1
    assert prometheus.query("pru_celery_queue_length")
    # The worker's own counters, scraped from its /metrics.
    assert {sample["metric"]["outcome"] for sample in prometheus.query('pru_broadcast_chunks_total{job="worker"}')} >= {
        "done",
        "failed",
        "retried",
    }


# --- the Grafana dashboard's and the rules' PromQL, run against this Prometheus --------------------

METRIC_NAME = re.compile(r"\bpru_[a-z0-9_]+")


def _exported_sample_names(stack) -> set[str]:
    names = set()
    for text in (requests.get(stack.gunicorn_url + "/metrics", timeout=10).text, _worker_metrics(stack)):
        for family in text_string_to_metric_families(text):
            names |= {sample.name for sample in family.samples}
    return names


def test_every_promql_query_of_the_dashboard_and_the_rules_runs_and_names_only_exported_metrics(stack, prometheus):
    dashboard = json.loads(METRICS_DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets") or []]
    rules = yaml.safe_load(RULES.read_text())
    expressions += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert len(expressions) > 30
    exported = _exported_sample_names(stack)
    for expression in expressions:
        # Prometheus parses and runs it (promtool cannot check a bare expression).
        prometheus.api("query", query=expression)
        unknown = set(METRIC_NAME.findall(expression)) - exported
        assert not unknown, f"{expression!r} names metrics nothing exports: {unknown}"


# --- screenshots for docs/observability.md ------------------------------------------------------------


def test_screenshots_of_bugsink_prometheus_and_flower(stack, bugsink, prometheus, browser):
    """Each dashboard as an operator sees it (PRU_DOCS_SCREENSHOTS=1 also writes docs/images/)."""
    artifacts = artifacts_dir()
    # Something on each page: an issue in Bugsink, a task in Flower, an alert in Prometheus.
    issues = bugsink.issues()
    assert issues, "run the module: the Bugsink tests leave issues behind"
    issue = next((item for item in issues if "refuse_image" in item["calculated_value"]), issues[0])

    # Tall enough for the issue's tags (request_id, broadcast_id) beside its event.
    context = browser.new_context(viewport={"width": 1400, "height": 1500})
    try:
        page = context.new_page()
        page.goto(bugsink.url + "/accounts/login/")
        page.fill("input[name=username]", bugsink.admin_email)
        page.fill("input[name=password]", bugsink.admin_password)
        page.click("form button")
        page.goto(f"{bugsink.url}/issues/issue/{issue['id']}/event/last/details/")
        assert "broadcast_id" in page.content()
        save_screenshot(page, "bugsink-issue.png", artifacts)

        # Debian's build ships Prometheus's classic UI (its root redirects there).
        page.goto(prometheus.url + "/classic/alerts")
        page.get_by_text("BroadcastStalled").first.wait_for()
        save_screenshot(page, "prometheus-alerts.png", artifacts)
    finally:
        context.close()

    context = browser.new_context(
        viewport={"width": 1400, "height": 900}, http_credentials={"username": FLOWER_USER, "password": FLOWER_PASSWORD}
    )
    try:
        page = context.new_page()
        page.goto(stack.flower_url + "/tasks")
        page.get_by_text(CHUNK_TASK).first.wait_for()
        save_screenshot(page, "flower-tasks.png", artifacts)
    finally:
        context.close()
