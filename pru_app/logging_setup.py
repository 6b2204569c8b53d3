"""structlog + stdlib logging: one JSON object per line in production, readable console output in development.

Django's settings, Celery's worker and Gunicorn's master all configure logging from here, so every
process writes the same line format to stdout. Importing this module does not import Django.
"""

import logging
import os

import structlog

from core.metrics import count_log_events
from pru_app.sentry_setup import SentryLogProcessor

GUNICORN_ACCESS_EVENT = "gunicorn.access"


def _gunicorn_access_fields(logger, method_name: str, event_dict: dict) -> dict:
    """Gunicorn's access record as fields (its atoms dict is the record's args) instead of CLF text."""
    # The formatter passes a foreign record's args along; only the access record needs them.
    atoms = event_dict.pop("positional_args", None)
    record = event_dict.get("_record")
    if record is None or record.name != "gunicorn.access" or not isinstance(atoms, dict):
        return event_dict
    event_dict["event"] = GUNICORN_ACCESS_EVENT
    event_dict.update(
        method=atoms.get("m"),
        path=atoms.get("U"),
        query=atoms.get("q") or None,
        status=_int_or_none(atoms.get("s")),
        bytes=_int_or_none(atoms.get("B")),
        duration_ms=round(atoms.get("D", 0) / 1000, 1),
        request_id=atoms.get("{x-request-id}i"),
        remote_addr=atoms.get("h"),
        user_agent=atoms.get("a"),
    )
    return event_dict


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


SHARED_PROCESSORS: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
# Records from plain stdlib loggers (Django, Gunicorn, Celery, botocore) get the same fields.
FOREIGN_PRE_CHAIN = [*SHARED_PROCESSORS, structlog.stdlib.ExtraAdder(), _gunicorn_access_fields]


def _final_processors(log_format: str) -> list:
    if log_format == "json":
        # Tracebacks become one string field, so an error stays one line.
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    return [structlog.dev.ConsoleRenderer(colors=False)]


def _formatter(log_format: str) -> dict:
    return {
        "()": structlog.stdlib.ProcessorFormatter,
        "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_final_processors(log_format)],
        "foreign_pre_chain": FOREIGN_PRE_CHAIN,
        "pass_foreign_args": True,
    }


def _stdout_logging_config(*, log_format: str, level: str, loggers: dict) -> dict:
    """One formatter, one stdout handler (and a discarding one), the root at level, and these loggers."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": _formatter(log_format)},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "structured"},
            # Not "no handlers": logging would fall back to its plain-text last resort on stderr.
            "discard": {"class": "logging.NullHandler"},
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": loggers,
    }


def build_logging_config(*, log_format: str, level: str) -> dict:
    """The stdlib LOGGING dict: every record, structlog's or not, goes through one formatter to stdout."""
    return _stdout_logging_config(
        log_format=log_format,
        level=level,
        loggers={
            # django-structlog logs each request (request_failed with the traceback); Django's own
            # request logger would repeat it as "Internal Server Error: /path".
            "django.request": {"handlers": ["discard"], "level": "ERROR", "propagate": False},
            "django.server": {"handlers": ["discard"], "propagate": False},
            "botocore": {"level": "WARNING"},
            "boto3": {"level": "WARNING"},
            "s3transfer": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
            # libvips narrates every thumbnail at INFO ("VIPS: thumbnailing ..."); its warnings and errors stay.
            "pyvips": {"level": "WARNING"},
        },
    )


def gunicorn_logconfig_dict(
    *, access_log: bool = True, log_format: str | None = None, level: str | None = None
) -> dict:
    """Gunicorn's logconfig_dict: its error log (and access log when wanted) as the app's lines, on stdout."""
    log_format = log_format or os.environ.get("LOG_FORMAT", "json")
    level = level or os.environ.get("LOG_LEVEL", "INFO")
    access = {"handlers": ["stdout"], "level": "INFO"} if access_log else {"handlers": [], "level": "CRITICAL"}
    return _stdout_logging_config(
        log_format=log_format,
        level=level,
        loggers={
            "gunicorn.error": {"handlers": ["stdout"], "level": level, "propagate": False},
            # A logconfig_dict switches Gunicorn's access log on; nginx and Django log each request already.
            "gunicorn.access": {**access, "propagate": False},
        },
    )


def configure_structlog(*, log_format: str) -> None:
    """structlog's chain ending in the stdlib formatter above; also adds the request-line fields."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            # Domain events that move a Prometheus counter (core.metrics.on_log_event).
            count_log_events,
            # Before rendering, while exc_info is still the exception: events and breadcrumbs.
            SentryLogProcessor(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Python warnings (deprecations, Celery's root warning) as log lines too, not free text on stderr.
    logging.captureWarnings(True)
    # Imported here: it needs Django, which Gunicorn's master (a user of this module) does not load.
    from core import request_logging

    request_logging.connect_receivers()
