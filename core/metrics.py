"""Prometheus metrics: requests, Celery tasks, log events as counters, /metrics, multiprocess mode.

Gunicorn's and Celery's processes each write their samples to files under PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode); whoever serves /metrics adds them up. Without that
variable (runserver, tests in one process) the samples stay in this process's default registry.
"""

import os
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

import structlog

# prometheus_client turns multiprocess mode on when the variable merely exists, and an empty one makes it
# write its files into the working directory: empty means off (before prometheus_client is imported).
for _variable in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"):
    if _variable in os.environ and not os.environ[_variable].strip():
        del os.environ[_variable]

from prometheus_client import (  # noqa: E402 (after the environment fix above)
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402 (as above)

METRICS_PATH = "/metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
NAMESPACE = "pru"

log = structlog.get_logger(__name__)

# A client may send any method; labels keep to a small fixed set.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "<unmatched>"

# One histogram per request: its _count is the request counter by route and status, its buckets
# the latency. A single observe() (a few microseconds: one lock and three writes to a mapped file)
# is the whole per-request cost (bench/metrics_overhead measures it).
REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time Django took to answer, by URL route (the pattern, not the path), method and status.",
    ["route", "method", "status"],
    namespace=NAMESPACE,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

TASKS = Counter(
    "celery_tasks_total",
    "Celery tasks run by this worker, by task name and outcome (succeeded, failed, retried).",
    ["task", "outcome"],
    namespace=NAMESPACE,
)
TASK_DURATION = Histogram(
    "celery_task_duration_seconds",
    "Time a Celery task ran, by task name.",
    ["task"],
    namespace=NAMESPACE,
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
)
TASK_LAST_SUCCESS = Gauge(
    "celery_task_last_success_timestamp_seconds",
    "When a task of this name last succeeded (Unix time).",
    ["task"],
    namespace=NAMESPACE,
    # The newest of all processes, dead ones included: a recycled pool process still ran it.
    multiprocess_mode="max",
)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def scrape_registry() -> CollectorRegistry:
    """What this process serves: every process's samples in multiprocess mode, else its own."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def mark_process_dead(pid: int) -> None:
    """Gunicorn's child_exit and Celery's worker_process_shutdown: drop a dead process's live gauges."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(pid)


# --- the request middleware and the /metrics answer ----------------------------------------------


class MetricsMiddleware:
    """Times every request by route and status; answers /metrics itself, before the host and HTTPS checks.

    Prometheus scrapes by address (web:8000 inside compose, 127.0.0.1:<port> without Docker) and over
    plain HTTP, which ALLOWED_HOSTS and SECURE_SSL_REDIRECT would refuse. nginx refuses /metrics from
    outside (deploy/nginx/default.conf.template), so only the inside reaches it. Second in MIDDLEWARE,
    after /healthz (probes are not requests worth counting).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info == METRICS_PATH:
            return metrics_response()
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None and match.route else UNMATCHED_ROUTE
        method = request.method if request.method in KNOWN_METHODS else "other"
        REQUEST_DURATION.labels(route, method, response.status_code).observe(time.perf_counter() - started)
        return response


def metrics_response():
    from django.http import HttpResponse

    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)


def render_metrics() -> bytes:
    """The text exposition: this deployment's processes, then the collectors named in METRICS_COLLECTORS."""
    from django.conf import settings

    extra = CollectorRegistry(auto_describe=False)
    extra.register(_ScrapeTimeCollectors(getattr(settings, "METRICS_COLLECTORS", ())))
    return generate_latest(scrape_registry()) + generate_latest(extra)


class _ScrapeTimeCollectors:
    """Runs each collector; one that fails (database or Redis down) is a 0 in pru_metrics_collector_up, not a 500."""

    def __init__(self, dotted_paths: Iterable[str]):
        self.dotted_paths = list(dotted_paths)

    def collect(self) -> Iterable[Metric]:
        from django.utils.module_loading import import_string

        up = GaugeMetricFamily(
            f"{NAMESPACE}_metrics_collector_up", "1 when the collector answered at this scrape.", labels=["collector"]
        )
        for dotted_path in self.dotted_paths:
            try:
                metrics = list(import_string(dotted_path)().collect())
            except Exception as error:  # Any failure of a data source: the rest of the scrape still counts.
                log.warning("metrics.collector_failed", collector=dotted_path, error=repr(error))
                up.add_metric([dotted_path], 0)
                continue
            up.add_metric([dotted_path], 1)
            yield from metrics
        yield up


# --- Celery queue depth ------------------------------------------------------------------------------

# kombu's Redis transport keeps a queue's messages of priority N in "<queue>\x06\x16<N>" (N > 0).
_KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
_KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)


def redis_queue_lengths(*, broker_url: str, queues: Iterable[str], timeout: float = 2.0) -> dict[str, int]:
    """LLEN of each Celery queue (every priority list of it) on a Redis broker."""
    import redis

    names = list(dict.fromkeys(queues))
    client = redis.Redis.from_url(broker_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        pipeline = client.pipeline(transaction=False)
        for name in names:
            for step in _KOMBU_PRIORITY_STEPS:
                pipeline.llen(name if step == 0 else f"{name}{_KOMBU_PRIORITY_SEPARATOR}{step}")
        lengths = pipeline.execute()
    finally:
        client.close()
    steps = len(_KOMBU_PRIORITY_STEPS)
    return {name: sum(lengths[index * steps : (index + 1) * steps]) for index, name in enumerate(names)}


def queue_depth_family(lengths: Mapping[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        f"{NAMESPACE}_celery_queue_length", "Messages waiting in a Celery queue (Redis LLEN).", labels=["queue"]
    )
    for name, length in lengths.items():
        family.add_metric([name], length)
    return family


# --- Celery workers: task counters and their own /metrics -------------------------------------------


def install_celery_metrics() -> None:
    """Count every task by name and outcome; a worker with CELERY_METRICS_PORT serves its processes' metrics."""
    from celery.signals import task_failure, task_postrun, task_prerun, task_retry, worker_init, worker_process_shutdown

    started: dict[str, float] = {}

    @task_prerun.connect(weak=False)
    def _started(task_id=None, **kwargs):
        started[task_id] = time.perf_counter()

    @task_postrun.connect(weak=False)
    def _finished(task_id=None, task=None, state=None, **kwargs):
        begun = started.pop(task_id, None)
        name = getattr(task, "name", "unknown")
        if begun is not None:
            TASK_DURATION.labels(name).observe(time.perf_counter() - begun)
        if state == "SUCCESS":
            TASKS.labels(name, "succeeded").inc()
            TASK_LAST_SUCCESS.labels(name).set(time.time())

    @task_failure.connect(weak=False)
    def _failed(sender=None, **kwargs):
        TASKS.labels(getattr(sender, "name", "unknown"), "failed").inc()

    @task_retry.connect(weak=False)
    def _retried(sender=None, **kwargs):
        TASKS.labels(getattr(sender, "name", "unknown"), "retried").inc()

    @worker_init.connect(weak=False)
    def _serve(**kwargs):
        port = os.environ.get("CELERY_METRICS_PORT")
        if port:
            from prometheus_client import start_http_server

            # The worker's main process: it serves what its pool processes wrote (multiprocess mode).
            start_http_server(
                int(port), addr=os.environ.get("CELERY_METRICS_ADDRESS", "127.0.0.1"), registry=scrape_registry()
            )

    @worker_process_shutdown.connect(weak=False)
    def _pool_process_gone(pid=None, **kwargs):
        mark_process_dead(pid or os.getpid())


# --- log events as metrics ---------------------------------------------------------------------------

EventHandler = Callable[[MutableMapping[str, Any]], None]
_event_handlers: dict[str, list[EventHandler]] = {}


def on_log_event(event: str, handler: EventHandler) -> None:
    """Call handler(event_dict) for every log line named `event` (a counter, a histogram…)."""
    _event_handlers.setdefault(event, []).append(handler)


def count_log_events(logger: object, method_name: str, event_dict: MutableMapping[str, Any]):
    """structlog processor: the domain events the log records are the metrics' source too (one dict lookup a line)."""
    handlers = _event_handlers.get(event_dict.get("event"))  # type: ignore[arg-type]
    if handlers:
        for handler in handlers:
            try:
                handler(event_dict)
            except Exception as error:  # A metric must never cost the log line (or the work that logs it).
                log.warning("metrics.handler_failed", handled_event=event_dict.get("event"), error=repr(error))
    return event_dict
