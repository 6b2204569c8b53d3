"""Writes about chats."""

from chat.models import Chat


def chat_ensure_for_user(*, user) -> Chat:
    """The user's chat, created when missing; safe under concurrent calls."""
    chat, _created = Chat.objects.get_or_create(user=user)
    return chat
