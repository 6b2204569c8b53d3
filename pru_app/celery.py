"""The Celery application; settings come from Django's CELERY_* settings."""

import logging.config
import os

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun
from django_structlog.celery.steps import DjangoStructLogInitStep

from core.metrics import install_celery_metrics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pru_app.settings")

app = Celery("pru_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fix-up closes every database connection before and after each task unless this
# is set: each broadcast chunk then paid a new PostgreSQL backend (fork, authentication, catalog
# caches filled again) between one chunk's commit and the next one's insert, while the in-process
# runner kept its connections. Django's own rule applies instead (close_old_connections below):
# a connection lives CONN_MAX_AGE, and one that saw an error is closed unless it still answers.
app.conf.update(CELERY_DB_REUSE_MAX=2**31)
# django-structlog's worker-side receivers: task_id, parent request_id and task_* lines.
app.steps["worker"].add(DjangoStructLogInitStep)
app.autodiscover_tasks()
# Tasks by name and outcome; with CELERY_METRICS_PORT the worker serves them (docs/observability.md).
install_celery_metrics()


@setup_logging.connect
def configure_worker_logging(**kwargs) -> None:
    """The worker logs through Django's LOGGING (JSON lines) instead of Celery's own format."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@task_prerun.connect
@task_postrun.connect
def close_old_database_connections(sender=None, **kwargs) -> None:
    """Around each task as around each web request: drop connections past CONN_MAX_AGE or broken.

    Not for a task run eagerly: it runs on its caller's connection, maybe inside its transaction.
    """
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery's router (CELERY_TASK_ROUTES): the queue CELERY_QUEUE_SETTING_BY_TASK names, read at each publish."""
    from django.conf import settings

    setting = settings.CELERY_QUEUE_SETTING_BY_TASK.get(name)
    return {"queue": getattr(settings, setting)} if setting else None
