"""What a recipient reads: their chat, its counts, its messages a page at a time, and the images they may open."""

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef

from chat.images.selectors import staff_may_view_images
from chat.models import Chat, Image, ImageStatus, Message


@dataclass(frozen=True)
class ChatCounts:
    message_count: int
    unread_count: int


@dataclass(frozen=True, slots=True)
class MessageRow:
    """A message as its reader sees it: the image's fields are None when the image was deleted."""

    id: int
    text: str
    created_at: datetime
    image_id: int | None
    image_title: str | None
    image_status: str | None
    image_width: int | None
    image_height: int | None

    @property
    def image_stored(self) -> bool:
        return self.image_status == ImageStatus.STORED


@dataclass(frozen=True)
class MessagePage:
    """Up to `limit` messages, newest first; next_before_id continues with older ones (None: no more)."""

    messages: list[MessageRow]
    next_before_id: int | None


def user_may_read_every_chat(user) -> bool:
    """Active staff allowed to view messages read any chat (the admin's own permission)."""
    return bool(user.is_active and user.is_staff and user.has_perm("chat.view_message"))


def chat_for_reader(*, user, chat_id: int | None = None) -> Chat:
    """The user's own chat, or (staff who may view messages) the chat chat_id; Chat.DoesNotExist otherwise.

    Someone else's chat is "does not exist" rather than "forbidden", so ids cannot be probed.
    The user's own chat, when it came with the user (the API's token query brings it), costs no query.
    """
    if chat_id is None and get_user_model().chat.is_cached(user):
        return user.chat  # Chat.DoesNotExist (RelatedObjectDoesNotExist) when the user has none
    chats = Chat.objects.only("id", "user_id", "last_read_message_id", "message_count", "unread_count")
    if chat_id is None or not user_may_read_every_chat(user):
        chats = chats.filter(user_id=user.pk)
    if chat_id is not None:
        chats = chats.filter(pk=chat_id)
    return chats.get()


def chat_counts(*, chat: Chat, as_loaded: bool = False) -> ChatCounts:
    """Messages of the chat and those after its read watermark: the chat row's counters, whatever its size.

    The database's triggers keep them (migration 0009_chat_message_counts). Read again (one
    primary-key query) unless as_loaded: the chat was read in this request (chat_for_reader) and
    its counters came with it.
    """
    if not as_loaded:
        chat.refresh_from_db(fields=["last_read_message_id", "message_count", "unread_count"])
    return ChatCounts(message_count=chat.message_count, unread_count=chat.unread_count)


def message_page(*, chat: Chat, before_id: int | None = None, limit: int) -> MessagePage:
    """A chat's messages older than before_id (the newest when None), newest first, with their images."""
    return _message_page(chat_id=chat.pk, before_id=before_id, limit=limit)


def message_page_for_reader(
    *, user, chat_id: int | None = None, before_id: int | None = None, limit: int
) -> MessagePage:
    """message_page of the chat chat_for_reader allows; Chat.DoesNotExist for one the user may not read.

    The chat's id is looked up first and given to the page query as a constant: with a subquery
    in its place, PostgreSQL plans for an unknown chat and may walk the whole primary key
    backwards for a chat of 10 messages (chat/tests/messaging/test_read_queries_at_scale.py).
    """
    chat = chat_for_reader(user=user, chat_id=chat_id)
    return message_page(chat=chat, before_id=before_id, limit=limit)


def _message_page(*, chat_id, before_id: int | None, limit: int) -> MessagePage:
    # Keyset on id within the chat: a backward range scan of (chat_id, id) that stops after
    # limit + 1 rows, whatever the chat's size or the page's depth. No OFFSET, no COUNT.
    # The chat as a range (chat_id >= X AND chat_id <= X) ordered by (chat_id, id): only the
    # (chat_id, id) index gives that order. With chat_id = X, PostgreSQL drops the constant from
    # ORDER BY and may walk the primary key backwards instead, betting the chat's rows are spread
    # evenly: for a big chat with old messages that read a million other rows (175 ms, not 0.2 ms;
    # bench/http_recipients).
    # Tuples, not model instances: building 20 instances and their images was a third of a request.
    messages = Message.objects.filter(chat_id__gte=chat_id, chat_id__lte=chat_id)
    if before_id is not None:
        messages = messages.filter(id__lt=before_id)
    rows = [
        MessageRow(*row)
        for row in messages.order_by("-chat_id", "-id").values_list(
            "id", "text", "created_at", "image_id", "image__title", "image__status", "image__width", "image__height"
        )[: limit + 1]
    ]
    more = len(rows) > limit
    rows = rows[:limit]
    return MessagePage(messages=rows, next_before_id=rows[-1].id if more else None)


def stored_image_for_reader(*, user, image_id: int) -> Image:
    """A stored image the user may see; Image.DoesNotExist otherwise (also when it is not theirs).

    Staff who may view images see all; anyone else only an image a message in their own chat
    carries, checked through the (chat_id, image_id) unique index in the same query.
    """
    images = Image.objects.only("id", "file", "content_type", "status").filter(pk=image_id, status=ImageStatus.STORED)
    if not staff_may_view_images(user):
        images = images.filter(Exists(Message.objects.filter(image_id=OuterRef("pk"), chat__user_id=user.pk)))
    return images.get()
