"""Sentry: on only with a DSN; one event per exception; jobs (core.observability) sampled apart from requests."""

import logging
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

import sentry_sdk
import structlog
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.types import Event, Hint
from sentry_sdk.utils import capture_internal_exceptions, event_from_exception

from core.observability import JOB_OP_PREFIX

# Warnings worth an event of their own (grouped by name); every other warning is a breadcrumb.
WARNING_EVENTS = frozenset({"image_fetch.failed"})
# django-structlog's request_failed and task_failed lines carry the exception the Django and
# Celery integrations capture already; reporting them too would make every error two events.
INTEGRATION_LOGGERS = ("django_structlog.",)
# Log context copied onto every event so a Sentry issue leads back to its log lines.
CORRELATION_TAGS = ("request_id", "task_id", "broadcast_id")
_SENTRY_LEVELS = {"critical": "fatal", "exception": "error", "warn": "warning"}
_REPORTED_MARK = "_pru_sentry_reported"


def init_sentry(
    *,
    dsn: str,
    environment: str,
    release: str | None,
    traces_sample_rate: float,
    job_traces_sample_rate: float = 1.0,
) -> bool:
    """Start the SDK when a DSN is configured; without one nothing is initialised or sent."""
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        send_default_pii=False,
        traces_sampler=_traces_sampler(default_rate=traces_sample_rate, job_rate=job_traces_sample_rate),
        before_send=drop_already_reported,
        # A fetch logs a line per photo, and every event serialises all the crumbs it carries: a
        # failed photo's event took ~8 ms with 100 of them, ~5.5 ms with 30 (bench/log_lines).
        max_breadcrumbs=30,
        integrations=[
            DjangoIntegration(),
            CeleryIntegration(),
            # structlog hands the stdlib whole event dicts; the bridge would make each rendered
            # line its own issue. SentryLogProcessor reports them, structured, instead.
            LoggingIntegration(level=None, event_level=None),
        ],
    )
    return True


# Transactions that start from a request: their parent's sampling decision is the client's to
# forge (a `sentry-trace: …-1` header), so it is never followed there.
REQUEST_OPS = frozenset({"http.server", "websocket.server"})


def _traces_sampler(*, default_rate: float, job_rate: float):
    def sampler(sampling_context: dict) -> float:
        # Fetches and broadcasts are rare and worth seeing whole; requests follow the rate.
        op = (sampling_context.get("transaction_context") or {}).get("op")
        if isinstance(op, str) and op.startswith(JOB_OP_PREFIX):
            return job_rate
        if op in REQUEST_OPS:
            return default_rate
        # A Celery task continues the trace of our own process that queued it.
        if sampling_context.get("parent_sampled") is not None:
            return float(sampling_context["parent_sampled"])
        return default_rate

    return sampler


def drop_already_reported(event: Event, hint: Hint) -> Event | None:
    """before_send: drop an exception already reported, or one raised `from` a reported one."""
    exc_info = (hint or {}).get("exc_info")
    if exc_info and exc_info[1] is not None:
        chain = list(_explicit_chain(exc_info[1]))
        if any(getattr(error, _REPORTED_MARK, False) for error in chain):
            return None
        for error in chain:
            try:
                setattr(error, _REPORTED_MARK, True)
            except (AttributeError, TypeError):  # Exceptions with __slots__ cannot be marked.
                pass
    context = structlog.contextvars.get_contextvars()
    tags = event.setdefault("tags", {})
    if isinstance(tags, dict):
        for key in CORRELATION_TAGS:
            if context.get(key) is not None:
                tags.setdefault(key, str(context[key]))
    return event


def _explicit_chain(error: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__


class SentryLogProcessor:
    """structlog processor: error lines (and WARNING_EVENTS) become events, info and up breadcrumbs.

    Equivalent to structlog-sentry's SentryProcessor, which keeps each event dict on the shared
    instance (unsafe with the fetch's worker threads) and cannot single out warning events.
    """

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not sentry_sdk.get_client().is_active():
            return event_dict
        logger_name = event_dict.get("logger") or ""
        if logger_name.startswith(INTEGRATION_LOGGERS):
            return event_dict
        level_name = _SENTRY_LEVELS.get(event_dict.get("level", method_name), event_dict.get("level", method_name))
        level = logging.getLevelName("CRITICAL" if level_name == "fatal" else level_name.upper())
        if not isinstance(level, int):
            return event_dict
        fields = {
            key: value
            for key, value in event_dict.items()
            if key not in ("event", "level", "logger", "timestamp", "exc_info") and not key.startswith("_")
        }
        with capture_internal_exceptions():
            if level >= logging.ERROR or (level >= logging.WARNING and event_dict.get("event") in WARNING_EVENTS):
                event_id = self._capture(event_dict, level_name, logger_name, fields)
                if event_id:
                    event_dict["sentry_id"] = event_id
            # A line that is an event of its own would only repeat itself as a crumb on the next one.
            elif level >= logging.INFO:
                sentry_sdk.add_breadcrumb(
                    type="log",
                    category=logger_name,
                    message=str(event_dict.get("event")),
                    level=level_name,
                    data=fields,
                )
        return event_dict

    @staticmethod
    def _capture(event_dict: MutableMapping[str, Any], level_name: str, logger_name: str, fields: dict) -> str | None:
        exc_info = _exc_info(event_dict.get("exc_info"))
        if exc_info:
            event, hint = event_from_exception(exc_info, client_options=sentry_sdk.get_client().options)
        else:
            event, hint = {}, {}
        event["message"] = str(event_dict.get("event"))
        event["level"] = level_name  # type: ignore[typeddict-item]  # one of Sentry's level names, checked above
        event["logger"] = logger_name
        event.setdefault("contexts", {})["log"] = fields
        event.setdefault("tags", {})["event"] = str(event_dict.get("event"))
        for key in CORRELATION_TAGS:
            if event_dict.get(key) is not None:
                event["tags"][key] = str(event_dict[key])
        if not exc_info and fields.get("kind"):
            # One issue per kind of failure (http_404, not_an_image, …), not one for all of them.
            event["tags"]["kind"] = str(fields["kind"])
            event["fingerprint"] = [str(event_dict.get("event")), str(fields["kind"])]
        return sentry_sdk.capture_event(event, hint=hint)


def _exc_info(value):
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple):
        return value if value[0] is not None else None
    if value:
        current = sys.exc_info()
        return current if current[0] is not None else None
    return None
