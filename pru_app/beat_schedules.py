"""Celery beat entries for the image jobs, from crontab lines in the environment."""

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured


def crontab_from_line(line: str, *, key: str) -> crontab | None:
    """ "30 4 * * *" (minute hour day-of-month month day-of-week) as a Celery crontab; "" turns the job off."""
    fields = line.split()
    if not fields:
        return None
    if len(fields) != 5:
        raise ImproperlyConfigured(
            f"{key} must be a crontab line of 5 fields (minute hour day month weekday), not {line!r}."
        )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(
            minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year, day_of_week=day_of_week
        )
    except ValueError as error:
        raise ImproperlyConfigured(f"{key}={line!r}: {error}") from error


def image_beat_schedule(*, fetch: str, verify: str, verify_repair: bool) -> dict:
    """The fetch and verify entries of CELERY_BEAT_SCHEDULE; a job whose line is empty has none."""
    entries = {}
    fetch_schedule = crontab_from_line(fetch, key="IMAGE_FETCH_SCHEDULE")
    if fetch_schedule is not None:
        # A run left waiting in the queue for an hour is replaced by the next one, not stacked.
        entries["images-fetch"] = {
            "task": "chat.tasks.fetch_images_task",
            "schedule": fetch_schedule,
            "options": {"expires": 3600},
        }
    verify_schedule = crontab_from_line(verify, key="IMAGE_VERIFY_SCHEDULE")
    if verify_schedule is not None:
        entries["images-verify"] = {
            "task": "chat.tasks.verify_images_task",
            "schedule": verify_schedule,
            "kwargs": {"repair": verify_repair},
            "options": {"expires": 3600},
        }
    return entries
