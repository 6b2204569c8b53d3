"""The Celery application; settings come from Django's CELERY_* settings."""

import logging.config
import os

from celery import Celery
from celery.signals import setup_logging
from django_structlog.celery.steps import DjangoStructLogInitStep

from core.metrics import install_celery_metrics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pru_app.settings")

app = Celery("pru_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
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


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery's router (CELERY_TASK_ROUTES): the queue CELERY_QUEUE_SETTING_BY_TASK names, read at each publish."""
    from django.conf import settings

    setting = settings.CELERY_QUEUE_SETTING_BY_TASK.get(name)
    return {"queue": getattr(settings, setting)} if setting else None
