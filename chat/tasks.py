"""Celery finds the app's tasks here; each is defined by its domain under the name queued messages and beat use."""

from chat.broadcasts.tasks import broadcast_chunk_task, broadcast_run_task, broadcasts_sweep_task
from chat.images.tasks import fetch_images_task, make_renditions_task, verify_images_task

__all__ = [
    "broadcast_chunk_task",
    "broadcast_run_task",
    "broadcasts_sweep_task",
    "fetch_images_task",
    "make_renditions_task",
    "verify_images_task",
]
