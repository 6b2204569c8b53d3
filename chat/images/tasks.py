"""fetch_images and verify_images as Celery tasks, scheduled by beat (CELERY_BEAT_SCHEDULE). Names stay chat.tasks.*."""

from celery import shared_task

from chat.images.fetch_lock import FetchAlreadyRunning
from chat.images.ingestion import image_fetch_all
from chat.images.monitoring import fetch_images_job, verify_images_job
from chat.images.verification import VerifyFoundProblems, image_verify_all


@shared_task(name="chat.tasks.fetch_images_task", acks_late=True)
def fetch_images_task() -> dict:
    """fetch_images as a task: a cron-monitored run; "found a run going" when one is (FetchAlreadyRunning)."""
    with fetch_images_job():
        try:
            return image_fetch_all().as_log_fields()
        except FetchAlreadyRunning as error:
            # The run that holds the lock does the work (and checks in); this one is not a failure.
            return {"skipped": str(error)}


@shared_task(name="chat.tasks.verify_images_task", acks_late=True)
def verify_images_task(repair: bool = False, delete_orphans: bool = False) -> dict:
    """verify_images as a task: a cron-monitored run whose check-in fails when anything is still wrong."""
    with verify_images_job():
        summary = image_verify_all(repair=repair, delete_orphans=delete_orphans)
        if not summary.clean:
            raise VerifyFoundProblems(summary)
    return summary.as_log_fields()
