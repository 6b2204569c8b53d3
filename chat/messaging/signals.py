"""Every user gets a chat the moment the user is created, whichever way it is created."""

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from chat.messaging.chats import chat_ensure_for_user


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="chat_for_new_user")
def create_chat_for_new_user(sender, instance, created, raw=False, **kwargs):
    # Fixtures (raw) bring their own chats.
    if created and not raw:
        chat_ensure_for_user(user=instance)
