"""Which tasks have a queue of their own: a table from task name to the Celery setting naming its queue."""

from celery import current_app

# Task name -> the Celery setting (CELERY_<NAME> in pru_app.settings, lower case here) holding its queue.
# Every other task goes to CELERY_TASK_DEFAULT_QUEUE.
QUEUE_SETTING_OF_TASK = {
    "chat.tasks.broadcasts_sweep_task": "sweeper_queue",
}


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery's router (CELERY_TASK_ROUTES): the task's own queue, read from the app's settings when it is sent."""
    setting = QUEUE_SETTING_OF_TASK.get(name)
    if setting is None:
        return None
    # Read when the task is sent, not at import: a test that points the app at a queue of its own
    # (chat.tests.celery_worker.publishing_to) moves the sweeper's queue with it.
    app = task.app if task is not None else current_app
    return {"queue": app.conf[setting]}
