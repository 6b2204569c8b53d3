from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Connects the receivers, and registers the tasks that services queue by name in every process.
        from chat import tasks  # noqa: F401
        from chat.messaging import signals  # noqa: F401
        from chat.metrics import connect_event_metrics

        connect_event_metrics()
