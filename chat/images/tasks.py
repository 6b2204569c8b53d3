"""fetch_images and verify_images as Celery tasks, scheduled by beat (CELERY_BEAT_SCHEDULE). Names stay chat.tasks.*."""

from celery import shared_task

from chat.images.fetch_lock import FetchAlreadyRunning
from chat.images.ingestion import image_fetch_all
from chat.images.monitoring import fetch_images_job, verify_images_job
from chat.images.rendition_verification import image_renditions_verify
from chat.images.renditions import image_renditions_backfill, image_renditions_rebuild
from chat.images.verification import VerifyFoundProblems, image_verify_all


class RenditionsFoundWrong(Exception):
    """verify_images_task found renditions missing or corrupt that it did not rebuild (the check-in fails)."""


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
        renditions = image_renditions_verify(repair=repair)
        if not summary.clean:
            raise VerifyFoundProblems(summary)
        if renditions.still_wrong:
            raise RenditionsFoundWrong(f"{renditions.still_wrong} rendition(s) missing or corrupt")
    return {**summary.as_log_fields(), **renditions.as_log_fields()}


@shared_task(name="chat.tasks.make_renditions_task", acks_late=True)
def make_renditions_task(image_ids: list[int] | None = None, retry_failed: bool = False) -> dict:
    """make_renditions as a task: the given images (any state of their renditions), or every stored one without them."""
    if image_ids is not None:
        return image_renditions_rebuild(image_ids=image_ids).as_log_fields()
    return image_renditions_backfill(include_failed=retry_failed).as_log_fields()
