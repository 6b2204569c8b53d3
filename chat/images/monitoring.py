"""fetch_images and verify_images as Sentry jobs: a transaction each, inside their cron monitors' check-ins."""

from django.conf import settings

from core.observability import JOB_OP_PREFIX, sentry_cron_job

FETCH_IMAGES_OP = f"{JOB_OP_PREFIX}fetch_images"
VERIFY_IMAGES_OP = f"{JOB_OP_PREFIX}verify_images"


def fetch_images_job():
    """A fetch run as the transaction "fetch_images" inside cron check-ins under SENTRY_CRON_MONITOR_SLUG."""
    return sentry_cron_job(
        name="fetch_images",
        op=FETCH_IMAGES_OP,
        slug=settings.SENTRY_CRON_MONITOR_SLUG,
        schedule=settings.SENTRY_CRON_SCHEDULE,
    )


def verify_images_job():
    """A verify run as the transaction "verify_images" inside cron check-ins under SENTRY_VERIFY_MONITOR_SLUG."""
    return sentry_cron_job(
        name="verify_images",
        op=VERIFY_IMAGES_OP,
        slug=settings.SENTRY_VERIFY_MONITOR_SLUG,
        schedule=settings.SENTRY_VERIFY_CRON_SCHEDULE,
    )
