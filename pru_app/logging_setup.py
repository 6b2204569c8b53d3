"""structlog + stdlib logging configuration: JSON lines in production, console in development."""

import logging

import structlog

SHARED_PROCESSORS = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ExtraAdder(),
]


def _renderer(log_format: str):
    if log_format == "json":
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=False)


def build_logging_config(*, log_format: str, level: str) -> dict:
    """The stdlib LOGGING dict: every record, structlog's or not, goes through one formatter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    _renderer(log_format),
                ],
                "foreign_pre_chain": SHARED_PROCESSORS,
            },
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "structured",
            },
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            # django-structlog logs each request; Django's own request logger would repeat it.
            "django.request": {"handlers": [], "level": "ERROR", "propagate": False},
            "django.server": {"handlers": [], "propagate": False},
            "botocore": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
        },
    }


def configure_structlog(*, log_format: str) -> None:
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


__all__ = ["build_logging_config", "configure_structlog", "logging"]
