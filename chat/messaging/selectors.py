"""What a recipient reads: their chat, its counts, its messages a page at a time, and the images they may open."""

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import Count, Exists, OuterRef, Subquery
from django.db.models.functions import Coalesce, JSONObject

from chat.images.selectors import staff_may_view_images
from chat.models import BroadcastChunk, Chat, ChunkStatus, Image, ImageRendition, ImageStatus, Message
from core.compiled_query import CompiledQuery
from core.database import BIGINT_MAX


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
    # [{"width", "height", "sha256"}, ...] narrowest first; empty while the image has none.
    image_renditions: list[dict]

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


def chat_read_floor(chat_id: int):
    """The largest message id a reader of the chat may be shown now (an expression, BIGINT_MAX when no bound).

    Every message of the chat at or below it has committed, and none will ever commit below it:
    each writer of the chat's messages is a running chunk whose ids all lie above its claim's
    message_ids_above (chat/broadcasts/chunks.py), recorded and committed before it drew an id.
    A chunk whose claim this statement cannot see yet draws its ids after that claim commits,
    above every id this statement can see. A running chunk without the value (claimed before
    migration 0006) holds the chat at 0 until its lease runs out. docs/api.md, "Read state".
    """
    running = BroadcastChunk.objects.filter(
        status=ChunkStatus.RUNNING, after_chat_id__lt=chat_id, up_to_chat_id__gte=chat_id
    ).annotate(floor=Coalesce("message_ids_above", 0))
    return Coalesce(Subquery(running.order_by("floor").values("floor")[:1]), BIGINT_MAX)


def chat_messages_shown(chat_id: int):
    """The chat's messages a reader may be shown and mark read: those at or below chat_read_floor.

    The chat as a range (chat_id >= X AND chat_id <= X): see _message_page.
    """
    return Message.objects.filter(chat_id__gte=chat_id, chat_id__lte=chat_id, id__lte=chat_read_floor(chat_id))


def chat_counts(*, chat: Chat) -> ChatCounts:
    """Messages of the chat shown to its reader and those after its watermark: one query, whatever the chat holds.

    The chat row's counters (kept by the database's triggers, migration 0010_chat_message_counts)
    count every committed message; those above chat_read_floor are not shown yet and are taken off.
    They are all unread (the watermark never passes the floor) and few: the messages of chunks that
    committed while an older chunk covering the chat still runs, found by a range scan of
    (chat_id, id) above the floor (none at all when no chunk runs: the floor is BIGINT_MAX).
    The SQL is compiled once per process (core.compiled_query).
    """
    ((message_count, unread_count, hidden),) = _CHAT_COUNTS.rows(chat_id=chat.pk)
    return ChatCounts(message_count=message_count - hidden, unread_count=unread_count - hidden)


def _chat_counts_queryset(*, shape, chat_id: int):
    above_floor = (
        Message.objects.filter(chat_id__gte=chat_id, chat_id__lte=chat_id, id__gt=chat_read_floor(chat_id))
        .order_by()
        .values("chat_id")
        .annotate(count=Count("id"))
        .values("count")
    )
    return (
        Chat.objects.filter(pk=chat_id)
        .annotate(hidden=Coalesce(Subquery(above_floor), 0))
        .values_list("message_count", "unread_count", "hidden")
    )


_CHAT_COUNTS = CompiledQuery(_chat_counts_queryset, kinds={"chat_id": int})


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


def _message_page(*, chat_id: int, before_id: int | None, limit: int) -> MessagePage:
    # The SQL is compiled once per process for each limit, with and without a cursor (core.compiled_query):
    # building and compiling this queryset cost more than running it.
    if before_id is None:
        found = _FIRST_PAGE.rows(shape=limit, chat_id=chat_id)
    else:
        found = _OLDER_PAGE.rows(shape=limit, chat_id=chat_id, before_id=before_id)
    rows = [MessageRow(*row) for row in found]
    more = len(rows) > limit
    rows = rows[:limit]
    return MessagePage(messages=rows, next_before_id=rows[-1].id if more else None)


def _page_queryset(*, shape: int, chat_id: int, before_id: int | None = None):
    # Keyset on id within the chat: a backward range scan of (chat_id, id) that stops after
    # limit + 1 rows, whatever the chat's size or the page's depth. No OFFSET, no COUNT.
    # The chat as a range (chat_id >= X AND chat_id <= X) ordered by (chat_id, id): only the
    # (chat_id, id) index gives that order. With chat_id = X, PostgreSQL drops the constant from
    # ORDER BY and may walk the primary key backwards instead, betting the chat's rows are spread
    # evenly: for a big chat with old messages that read a million other rows (175 ms, not 0.2 ms;
    # bench/http_recipients).
    # Tuples, not model instances: building 20 instances and their images was a third of a request.
    # Only what chat_read_floor allows: a message can then appear only above what a reader was shown.
    limit = shape
    messages = chat_messages_shown(chat_id)
    if before_id is not None:
        messages = messages.filter(id__lt=before_id)
    # The renditions come in the same query (an array per row, by the (image_id, width) unique index):
    # the page's query count stays what it was.
    renditions = ArraySubquery(
        ImageRendition.objects.filter(image_id=OuterRef("image_id"))
        .order_by("width")
        .values(rendition=JSONObject(width="width", height="height", sha256="sha256"))
    )
    return (
        messages.order_by("-chat_id", "-id")
        .annotate(renditions=renditions)
        .values_list(
            "id",
            "text",
            "created_at",
            "image_id",
            "image__title",
            "image__status",
            "image__width",
            "image__height",
            "renditions",
        )[: limit + 1]
    )


_FIRST_PAGE = CompiledQuery(_page_queryset, kinds={"chat_id": int})
_OLDER_PAGE = CompiledQuery(_page_queryset, kinds={"chat_id": int, "before_id": int})


def stored_image_for_reader(*, user, image_id: int) -> Image:
    """A stored image the user may see; Image.DoesNotExist otherwise (also when it is not theirs).

    Staff who may view images see all; anyone else only an image a message in their own chat
    carries, checked through the (chat_id, image_id) unique index in the same query.
    """
    images = Image.objects.only("id", "file", "content_type", "status").filter(pk=image_id, status=ImageStatus.STORED)
    if not staff_may_view_images(user):
        images = images.filter(Exists(Message.objects.filter(image_id=OuterRef("pk"), chat__user_id=user.pk)))
    return images.get()


def rendition_for_reader(*, user, image_id: int, sha256: str) -> ImageRendition:
    """A rendition of a stored image the user may see (stored_image_for_reader's rule); DoesNotExist otherwise."""
    renditions = ImageRendition.objects.only("id", "file", "content_type").filter(
        image_id=image_id, sha256=sha256, image__status=ImageStatus.STORED
    )
    if not staff_may_view_images(user):
        renditions = renditions.filter(
            Exists(Message.objects.filter(image_id=OuterRef("image_id"), chat__user_id=user.pk))
        )
    return renditions.get()
