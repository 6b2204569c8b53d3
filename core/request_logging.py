"""What django-structlog's request lines lack: method, path, status, duration, a well-formed request id."""

import re
import time
import uuid

import sentry_sdk
import structlog
from django_structlog import signals

# nginx's $request_id is 32 hex digits; anything else (too long, odd bytes) is replaced.
WELL_FORMED_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def bind_request_fields(request, logger, log_kwargs, **kwargs) -> None:
    """request_started: remember the start time; method and path go on every line of the request."""
    request._log_started_at = time.monotonic()
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if not request_id or not WELL_FORMED_REQUEST_ID.match(str(request_id)):
        structlog.contextvars.bind_contextvars(request_id=str(uuid.uuid4()))
    structlog.contextvars.bind_contextvars(method=request.method, path=request.path)


def add_finished_fields(request, logger, response, log_kwargs, **kwargs) -> None:
    """request_finished: the status and how long the view took."""
    log_kwargs.update(status=response.status_code, duration_ms=_elapsed_ms(request))


def add_failed_fields(request, logger, exception, log_kwargs, **kwargs) -> None:
    """request_failed: status 500, the duration and the id of the Sentry event for this exception."""
    log_kwargs.update(status=500, duration_ms=_elapsed_ms(request))
    # The Django integration captured the exception just before (its receiver connected first).
    event_id = sentry_sdk.last_event_id() if sentry_sdk.get_client().is_active() else None
    if event_id:
        log_kwargs["sentry_id"] = event_id


def _elapsed_ms(request) -> float | None:
    started = getattr(request, "_log_started_at", None)
    return None if started is None else round((time.monotonic() - started) * 1000, 1)


def connect_receivers() -> None:
    signals.bind_extra_request_metadata.connect(bind_request_fields, dispatch_uid="pru_app.request_fields")
    signals.bind_extra_request_finished_metadata.connect(add_finished_fields, dispatch_uid="pru_app.finished_fields")
    signals.bind_extra_request_failed_metadata.connect(add_failed_fields, dispatch_uid="pru_app.failed_fields")
