"""Writes about what a recipient has read: one watermark per chat."""

from django.db.models import Subquery
from django.db.models.functions import Coalesce, Greatest

from chat.messaging.selectors import chat_messages_shown
from chat.models import Chat


def chat_mark_read(*, chat: Chat, up_to_message_id: int) -> int:
    """Mark the chat's messages up to and including up_to_message_id read; the new watermark.

    One UPDATE. The watermark only moves forward (a late or repeated call never makes messages
    unread again), and only as far as the newest message of this chat at or below the given id
    that a reader may be shown (chat_messages_shown: never above a message still being written):
    an id beyond the chat's messages cannot mark tomorrow's broadcast read in advance, an id
    from another chat reveals nothing about it, and a message that commits later never lands
    under the watermark (docs/api.md, "Read state").
    """
    # As chat.messaging.selectors' message pages: the chat as a range, ordered like the (chat_id, id) index,
    # so PostgreSQL reads one index entry rather than walking the primary key past other chats.
    newest_at_or_below = (
        chat_messages_shown(chat.pk).filter(id__lte=up_to_message_id).order_by("-chat_id", "-id").values("id")[:1]
    )
    Chat.objects.filter(pk=chat.pk).update(
        last_read_message_id=Greatest("last_read_message_id", Coalesce(Subquery(newest_at_or_below), 0))
    )
    chat.refresh_from_db(fields=["last_read_message_id"])
    return chat.last_read_message_id
