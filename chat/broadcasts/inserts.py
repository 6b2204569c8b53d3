"""The set-based insert behind every broadcast: one INSERT … SELECT per range of chats."""

from django.db import IntegrityError, connection, transaction

from chat.models import Chat, Image, Message


def insert_missing_messages(*, image_ids: list[int], after_chat_id: int, up_to_chat_id: int) -> int:
    """Create the messages the chats in (after_chat_id, up_to_chat_id] lack for image_ids; return how many."""
    try:
        # Savepoint: an anti-join insert is cheaper than ON CONFLICT's speculative insertion...
        with transaction.atomic():
            return _insert_pairs(image_ids, after_chat_id, up_to_chat_id, on_conflict="")
    except IntegrityError:
        # ...but a concurrent send may commit the same pairs first; the unique constraint says so.
        # (A chat or image deleted meanwhile fails its foreign key the same way; the new
        # statement's snapshot no longer sees it.)
        return _insert_pairs(
            image_ids, after_chat_id, up_to_chat_id, on_conflict="ON CONFLICT (chat_id, image_id) DO NOTHING"
        )


def count_chats(*, after_chat_id: int, up_to_chat_id: int) -> int:
    """The chats in (after_chat_id, up_to_chat_id], an index range scan."""
    return Chat.objects.filter(pk__gt=after_chat_id, pk__lte=up_to_chat_id).count()


def _insert_pairs(image_ids, after_chat_id, up_to_chat_id, *, on_conflict: str) -> int:
    quote = connection.ops.quote_name
    message_table = quote(Message._meta.db_table)
    chat_table = quote(Chat._meta.db_table)
    image_table = quote(Image._meta.db_table)
    image_placeholders = ", ".join(["%s"] * len(image_ids))
    with connection.cursor() as cursor:
        # Table names from the models, quoted; values are parameters.
        cursor.execute(
            f"""
            INSERT INTO {message_table} (chat_id, image_id, text)
            SELECT c.id, i.id, COALESCE(NULLIF(i.description, ''), i.title)
            FROM {chat_table} AS c CROSS JOIN {image_table} AS i
            WHERE c.id > %s AND c.id <= %s AND i.id IN ({image_placeholders})
              AND NOT EXISTS (SELECT 1 FROM {message_table} AS m WHERE m.chat_id = c.id AND m.image_id = i.id)
            ORDER BY c.id, i.id
            {on_conflict}
            """,  # noqa: S608
            [after_chat_id, up_to_chat_id, *image_ids],
        )
        return cursor.rowcount
