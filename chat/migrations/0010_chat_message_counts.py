"""Chat.message_count and Chat.unread_count, kept true by the database itself.

The chat summary read COUNT(*) over the chat's messages: 17 ms for a chat of 100,000. These two
counters make it one row's read, whatever the chat's size. Triggers keep them, so every writer of
messages keeps them without knowing: broadcast chunks (INSERT … SELECT, ON CONFLICT DO NOTHING),
the admin, a cascade, a test's bulk insert.

- chat_message, after each INSERT / DELETE / UPDATE statement (transition tables: one UPDATE of
  the chats touched per statement, not one per message): message_count moves by the rows added or
  removed per chat, unread_count by those with an id above the chat's watermark. The UPDATE of a
  chat row waits for its row lock, and PostgreSQL then re-reads the row (EvalPlanQual): the
  watermark compared is the one committed last, never a stale one.
- chat_chat, before an UPDATE that moves last_read_message_id: unread_count loses the messages
  between the old and the new watermark (gains them if it moves back). The trigger runs with the
  row locked and counts in its own statement's snapshot (READ COMMITTED), so it sees every message
  committed by a writer it waited for; a message still uncommitted is counted by its own
  statement's trigger against the new watermark once the lock is free. Either order gives the
  exact count (chat/tests/messaging/test_chat_counts.py races both).

Adding the counters takes the message table's trigger lock (no writer in between) and fills them
from one aggregate in the same transaction.
"""

from django.db import migrations, models

POSTGRES = [
    # Each statement names only the transition tables its operation has (PL/pgSQL plans a statement when reached).
    """
    CREATE FUNCTION chat_message_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE chat_chat AS c
            SET message_count = c.message_count + d.n,
                unread_count = c.unread_count + CASE
                    WHEN d.min_id > c.last_read_message_id THEN d.n
                    WHEN d.max_id <= c.last_read_message_id THEN 0
                    ELSE (SELECT count(*) FROM new_rows AS r
                          WHERE r.chat_id = c.id AND r.id > c.last_read_message_id) END
            FROM (SELECT r.chat_id, count(*) AS n, min(r.id) AS min_id, max(r.id) AS max_id
                  FROM new_rows AS r
                  GROUP BY r.chat_id) AS d
            WHERE c.id = d.chat_id;
        ELSIF TG_OP = 'DELETE' THEN
            UPDATE chat_chat AS c
            SET message_count = c.message_count - d.n,
                unread_count = c.unread_count - CASE
                    WHEN d.min_id > c.last_read_message_id THEN d.n
                    WHEN d.max_id <= c.last_read_message_id THEN 0
                    ELSE (SELECT count(*) FROM old_rows AS r
                          WHERE r.chat_id = c.id AND r.id > c.last_read_message_id) END
            FROM (SELECT r.chat_id, count(*) AS n, min(r.id) AS min_id, max(r.id) AS max_id
                  FROM old_rows AS r
                  GROUP BY r.chat_id) AS d
            WHERE c.id = d.chat_id;
        ELSE
            -- An UPDATE counts only the rows that changed chat or id, out of one and into the other.
            UPDATE chat_chat AS c
            SET message_count = c.message_count - d.n,
                unread_count = c.unread_count - CASE
                    WHEN d.min_id > c.last_read_message_id THEN d.n
                    WHEN d.max_id <= c.last_read_message_id THEN 0
                    ELSE (SELECT count(*) FROM old_rows AS r
                          WHERE r.chat_id = c.id AND r.id > c.last_read_message_id
                            AND NOT EXISTS (SELECT 1 FROM new_rows AS w WHERE w.id = r.id AND w.chat_id = r.chat_id)) END
            FROM (SELECT r.chat_id, count(*) AS n, min(r.id) AS min_id, max(r.id) AS max_id
                  FROM old_rows AS r WHERE
                            NOT EXISTS (SELECT 1 FROM new_rows AS w WHERE w.id = r.id AND w.chat_id = r.chat_id)
                  GROUP BY r.chat_id) AS d
            WHERE c.id = d.chat_id;
            UPDATE chat_chat AS c
            SET message_count = c.message_count + d.n,
                unread_count = c.unread_count + CASE
                    WHEN d.min_id > c.last_read_message_id THEN d.n
                    WHEN d.max_id <= c.last_read_message_id THEN 0
                    ELSE (SELECT count(*) FROM new_rows AS r
                          WHERE r.chat_id = c.id AND r.id > c.last_read_message_id
                            AND NOT EXISTS (SELECT 1 FROM old_rows AS o WHERE o.id = r.id AND o.chat_id = r.chat_id)) END
            FROM (SELECT r.chat_id, count(*) AS n, min(r.id) AS min_id, max(r.id) AS max_id
                  FROM new_rows AS r WHERE
                            NOT EXISTS (SELECT 1 FROM old_rows AS o WHERE o.id = r.id AND o.chat_id = r.chat_id)
                  GROUP BY r.chat_id) AS d
            WHERE c.id = d.chat_id;
        END IF;
        RETURN NULL;
    END $$
    """,
    """CREATE TRIGGER chat_message_counts_insert AFTER INSERT ON chat_message
       REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION chat_message_counts_apply()""",
    """CREATE TRIGGER chat_message_counts_delete AFTER DELETE ON chat_message
       REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION chat_message_counts_apply()""",
    """CREATE TRIGGER chat_message_counts_update AFTER UPDATE ON chat_message
       REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
       EXECUTE FUNCTION chat_message_counts_apply()""",
    """
    CREATE FUNCTION chat_unread_on_read() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.last_read_message_id > OLD.last_read_message_id THEN
            NEW.unread_count := NEW.unread_count - (SELECT count(*) FROM chat_message AS m
                WHERE m.chat_id = NEW.id AND m.id > OLD.last_read_message_id AND m.id <= NEW.last_read_message_id);
        ELSIF NEW.last_read_message_id < OLD.last_read_message_id THEN
            NEW.unread_count := NEW.unread_count + (SELECT count(*) FROM chat_message AS m
                WHERE m.chat_id = NEW.id AND m.id > NEW.last_read_message_id AND m.id <= OLD.last_read_message_id);
        END IF;
        RETURN NEW;
    END $$
    """,
    """CREATE TRIGGER chat_unread_on_read BEFORE UPDATE OF last_read_message_id ON chat_chat
       FOR EACH ROW WHEN (NEW.last_read_message_id IS DISTINCT FROM OLD.last_read_message_id)
       EXECUTE FUNCTION chat_unread_on_read()""",
    # A broadcast chunk inserts with session_replication_role = replica (migration 0007): only
    # ENABLE ALWAYS triggers fire then, and these must fire for every writer.
    "ALTER TABLE chat_message ENABLE ALWAYS TRIGGER chat_message_counts_insert",
    "ALTER TABLE chat_message ENABLE ALWAYS TRIGGER chat_message_counts_delete",
    "ALTER TABLE chat_message ENABLE ALWAYS TRIGGER chat_message_counts_update",
    "ALTER TABLE chat_chat ENABLE ALWAYS TRIGGER chat_unread_on_read",
    # Filled while the triggers' lock keeps every writer of messages out until this commits.
    "LOCK TABLE chat_message IN SHARE ROW EXCLUSIVE MODE",
    """UPDATE chat_chat AS c SET message_count = d.n, unread_count = d.unread
       FROM (SELECT m.chat_id, count(*) AS n, count(*) FILTER (WHERE m.id > c2.last_read_message_id) AS unread
             FROM chat_message AS m JOIN chat_chat AS c2 ON c2.id = m.chat_id GROUP BY m.chat_id) AS d
       WHERE c.id = d.chat_id""",
]
POSTGRES_REVERSE = [
    "DROP TRIGGER IF EXISTS chat_unread_on_read ON chat_chat",
    "DROP FUNCTION IF EXISTS chat_unread_on_read()",
    "DROP TRIGGER IF EXISTS chat_message_counts_insert ON chat_message",
    "DROP TRIGGER IF EXISTS chat_message_counts_delete ON chat_message",
    "DROP TRIGGER IF EXISTS chat_message_counts_update ON chat_message",
    "DROP FUNCTION IF EXISTS chat_message_counts_apply()",
]
# SQLite (bin/serve's single-user default): row triggers, the same counts.
SQLITE = [
    """CREATE TRIGGER chat_message_counts_insert AFTER INSERT ON chat_message BEGIN
         UPDATE chat_chat SET message_count = message_count + 1,
                              unread_count = unread_count + (NEW.id > last_read_message_id)
         WHERE id = NEW.chat_id; END""",
    """CREATE TRIGGER chat_message_counts_delete AFTER DELETE ON chat_message BEGIN
         UPDATE chat_chat SET message_count = message_count - 1,
                              unread_count = unread_count - (OLD.id > last_read_message_id)
         WHERE id = OLD.chat_id; END""",
    """CREATE TRIGGER chat_message_counts_update AFTER UPDATE OF chat_id, id ON chat_message BEGIN
         UPDATE chat_chat SET message_count = message_count - 1,
                              unread_count = unread_count - (OLD.id > last_read_message_id)
         WHERE id = OLD.chat_id;
         UPDATE chat_chat SET message_count = message_count + 1,
                              unread_count = unread_count + (NEW.id > last_read_message_id)
         WHERE id = NEW.chat_id; END""",
    """CREATE TRIGGER chat_unread_on_read AFTER UPDATE OF last_read_message_id ON chat_chat
       WHEN NEW.last_read_message_id IS NOT OLD.last_read_message_id BEGIN
         UPDATE chat_chat SET unread_count = (SELECT count(*) FROM chat_message AS m
             WHERE m.chat_id = NEW.id AND m.id > NEW.last_read_message_id)
         WHERE id = NEW.id; END""",
    """UPDATE chat_chat SET
         message_count = (SELECT count(*) FROM chat_message AS m WHERE m.chat_id = chat_chat.id),
         unread_count = (SELECT count(*) FROM chat_message AS m
                         WHERE m.chat_id = chat_chat.id AND m.id > chat_chat.last_read_message_id)""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS chat_unread_on_read",
    "DROP TRIGGER IF EXISTS chat_message_counts_insert",
    "DROP TRIGGER IF EXISTS chat_message_counts_delete",
    "DROP TRIGGER IF EXISTS chat_message_counts_update",
]


def add_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in POSTGRES if vendor == "postgresql" else SQLITE if vendor == "sqlite" else []:
        schema_editor.execute(statement)


def remove_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in POSTGRES_REVERSE if vendor == "postgresql" else SQLITE_REVERSE if vendor == "sqlite" else []:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0009_image_etag"),
    ]

    operations = [
        migrations.AddField(
            model_name="chat",
            name="message_count",
            field=models.BigIntegerField(db_default=0, default=0, editable=False),
        ),
        migrations.AddField(
            model_name="chat",
            name="unread_count",
            field=models.BigIntegerField(db_default=0, default=0, editable=False),
        ),
        migrations.RunPython(add_triggers, remove_triggers, elidable=False),
    ]
