"""Jobs as Sentry sees them: a unit of work is a transaction (and a cron check-in when it has a monitor)."""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import sentry_sdk
from sentry_sdk.consts import SPANSTATUS
from sentry_sdk.tracing import Span, Transaction, TransactionSource

# Every job's op starts with it; the sampler traces jobs at SENTRY_JOB_TRACES_SAMPLE_RATE.
JOB_OP_PREFIX = "task."


@contextmanager
def sentry_job(
    *, name: str, op: str, monitor_slug: str = "", monitor_config: dict[str, Any] | None = None
) -> Iterator[Span]:
    """Run a unit of work as a transaction (and a cron check-in when a slug is given); report its exception once."""
    with ExitStack() as stack:
        if monitor_slug:
            # A plain dict is what the SDK's MonitorConfig TypedDict describes.
            stack.enter_context(sentry_sdk.monitor(monitor_slug=monitor_slug, monitor_config=monitor_config))  # type: ignore[arg-type]
        transaction = stack.enter_context(sentry_sdk.start_transaction(_job_transaction(name=name, op=op)))
        try:
            yield transaction
        except Exception:
            sentry_sdk.capture_exception()
            raise
        if getattr(transaction, "status", None) is None:
            transaction.set_status(SPANSTATUS.OK)


def _job_transaction(*, name: str, op: str) -> Transaction:
    # Inside a request or a Celery task the job stays in that trace, so one trace id leads
    # from nginx's request to the job's spans and events.
    parent = sentry_sdk.get_current_span()
    if parent is None or parent.trace_id is None:
        return Transaction(name=name, op=op, source=TransactionSource.TASK)
    return Transaction(
        name=name,
        op=op,
        source=TransactionSource.TASK,
        trace_id=parent.trace_id,
        parent_span_id=parent.span_id,
        parent_sampled=parent.sampled,
    )


def sentry_cron_job(*, name: str, op: str, slug: str, schedule: str):
    # With a schedule the first check-in creates (or updates) the monitor; without, it must exist.
    monitor_config = {"schedule": {"type": "crontab", "value": schedule}, "timezone": "UTC"} if schedule else None
    return sentry_job(name=name, op=op, monitor_slug=slug, monitor_config=monitor_config)
