"""The set-based insert behind every broadcast: one INSERT … SELECT per range of chats.

Integrity is checked once per chunk, not once per row. The statement locks the chats of its
range and the images `FOR KEY SHARE` (no one can delete them, or change their ids, until the
chunk's transaction ends) and inserts pairs of the rows it locked only: a chat or an image
deleted before the lock is simply not sent to. With that guarantee held for the whole set, the
per-row foreign-key triggers PostgreSQL would run for each message (about 70% of a broadcast's
cost) are skipped: `session_replication_role = replica` for this statement only, in the chunk's
transaction. The foreign keys stay declared, so every other writer is checked row by row.

Setting session_replication_role needs a privilege (superuser, or on PostgreSQL 15+
`GRANT SET ON PARAMETER session_replication_role`: migration 0007, docs/broadcasts.md). Without
it the same statement runs with the per-row checks, and the process says so once in its log.
Replica mode also turns off ordinary (ENABLE) triggers for the statement: a trigger on
chat_message that must fire for broadcasts is declared ENABLE ALWAYS.
"""

from dataclasses import dataclass

import structlog
from django.db import IntegrityError, connection, transaction

from chat.models import Chat, Image, Message

logger = structlog.get_logger(__name__)

# Per database (host, port, name, user): may this connection's role skip the per-row checks?
_REPLICA_ALLOWED: dict[tuple, bool] = {}


@dataclass(frozen=True)
class ChunkInsert:
    """What one chunk's insert found and did: the live chats and images it locked, the messages it created."""

    chats: int
    images: int
    created: int

    @property
    def skipped(self) -> int:
        """Pairs that were already there, from an earlier or a concurrent send."""
        return max(self.chats * self.images - self.created, 0)


def insert_missing_messages(*, image_ids: list[int], after_chat_id: int, up_to_chat_id: int) -> ChunkInsert:
    """Create the messages the chats in (after_chat_id, up_to_chat_id] lack for image_ids, in the caller's transaction."""
    per_chunk = connection.vendor == "postgresql" and may_skip_row_checks()
    if per_chunk:
        # Transaction-local (set_config's is_local): set before the savepoint, so it outlives its
        # rollback; any error rolls back the caller's transaction (or savepoint), and the setting with it.
        _set_replication_role("replica")
    try:
        # Savepoint: an anti-join insert is cheaper than ON CONFLICT's speculative insertion...
        with transaction.atomic():
            inserted = _insert_pairs(image_ids, after_chat_id, up_to_chat_id, on_conflict="")
    except IntegrityError:
        # ...but a concurrent send may commit the same pairs first; the unique constraint says so.
        inserted = _insert_pairs(
            image_ids, after_chat_id, up_to_chat_id, on_conflict="ON CONFLICT (chat_id, image_id) DO NOTHING"
        )
    if per_chunk:
        # The rest of the chunk's transaction (its own bookkeeping) is checked as usual.
        _set_replication_role("origin")
    return inserted


def may_skip_row_checks() -> bool:
    """True when this connection's role may set session_replication_role; logged once per process when not."""
    settings_dict = connection.settings_dict
    key = (settings_dict.get("HOST"), settings_dict.get("PORT"), settings_dict.get("NAME"), settings_dict.get("USER"))
    allowed = _REPLICA_ALLOWED.get(key)
    if allowed is None:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT CASE
                    WHEN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN true
                    WHEN current_setting('server_version_num')::int >= 150000
                        THEN has_parameter_privilege('session_replication_role', 'SET')
                    ELSE false
                END, current_user
                """
            )
            allowed, role = cursor.fetchone()
        _REPLICA_ALLOWED[key] = allowed
        if not allowed:
            logger.warning(
                "broadcast.row_checks",
                role=role,
                detail=(
                    "this database role may not set session_replication_role: broadcasts check foreign keys "
                    "row by row (about 3× slower). Grant it as docs/broadcasts.md says "
                    f"(GRANT SET ON PARAMETER session_replication_role TO {role})."
                ),
            )
    return allowed


def _set_replication_role(role: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('session_replication_role', %s, true)", [role])


def _insert_pairs(image_ids, after_chat_id, up_to_chat_id, *, on_conflict: str) -> ChunkInsert:
    quote = connection.ops.quote_name
    message_table = quote(Message._meta.db_table)
    chat_table = quote(Chat._meta.db_table)
    image_table = quote(Image._meta.db_table)
    image_placeholders = ", ".join(["%s"] * len(image_ids))
    if connection.vendor != "postgresql":
        return _insert_pairs_without_locks(image_ids, after_chat_id, up_to_chat_id, on_conflict=on_conflict)
    with connection.cursor() as cursor:
        # Table names from the models, quoted; values are parameters. The CTEs lock the rows
        # the messages will reference, and the insert pairs those locked rows only.
        cursor.execute(
            f"""
            WITH chats AS MATERIALIZED (
                SELECT id FROM {chat_table} WHERE id > %s AND id <= %s FOR KEY SHARE
            ), images AS MATERIALIZED (
                SELECT id, COALESCE(NULLIF(description, ''), title) AS text
                FROM {image_table} WHERE id IN ({image_placeholders}) FOR KEY SHARE
            ), inserted AS (
                INSERT INTO {message_table} (chat_id, image_id, text)
                SELECT c.id, i.id, i.text
                FROM chats AS c CROSS JOIN images AS i
                WHERE NOT EXISTS (
                    SELECT 1 FROM {message_table} AS m
                    WHERE m.chat_id = c.id AND m.image_id = i.id AND m.chat_id > %s AND m.chat_id <= %s
                )
                ORDER BY c.id, i.id
                {on_conflict}
                RETURNING 1
            )
            SELECT (SELECT COUNT(*) FROM chats), (SELECT COUNT(*) FROM images), (SELECT COUNT(*) FROM inserted)
            """,  # noqa: S608
            [after_chat_id, up_to_chat_id, *image_ids, after_chat_id, up_to_chat_id],
        )
        chats, images, created = cursor.fetchone()
    return ChunkInsert(chats=chats, images=images, created=created)


def _insert_pairs_without_locks(image_ids, after_chat_id, up_to_chat_id, *, on_conflict: str) -> ChunkInsert:
    """SQLite (bin/serve without DATABASE_URL): no row locks, no data-modifying CTE; one writer at a time anyway."""
    quote = connection.ops.quote_name
    message_table = quote(Message._meta.db_table)
    chat_table = quote(Chat._meta.db_table)
    image_table = quote(Image._meta.db_table)
    image_placeholders = ", ".join(["%s"] * len(image_ids))
    chats = Chat.objects.filter(pk__gt=after_chat_id, pk__lte=up_to_chat_id).count()
    images = Image.objects.filter(pk__in=image_ids).count()
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
        return ChunkInsert(chats=chats, images=images, created=cursor.rowcount)
