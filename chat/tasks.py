"""Celery tasks: thin wrappers that load ids and call a service."""

from celery import shared_task

from chat.models import Broadcast
from chat.services.broadcasts import broadcast_run


@shared_task(acks_late=True)
def broadcast_run_task(broadcast_id: int) -> int:
    """Run a queued broadcast; returns the number of messages it created."""
    broadcast = Broadcast.objects.select_related("sent_by").get(pk=broadcast_id)
    return broadcast_run(broadcast=broadcast).created_count
