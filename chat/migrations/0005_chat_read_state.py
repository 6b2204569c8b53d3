"""A chat's read state, and the index that reads a chat's messages newest first.

Chat.last_read_message_id is the whole read state: messages of the chat with a larger id are
unread. One row per chat, written when its user reads, never by a broadcast. Adding the column
with a constant default rewrites nothing (PostgreSQL 11+ stores the default in the catalogue).

message_chat_id_id (chat_id, id) serves a chat's newest-first pages (keyset on id), its message
and unread counts and the read service's "newest id up to N" as index range scans, so a page
costs the same for a chat of 10 messages or of 100,000. The unique (chat_id, image_id) index
orders a chat's messages by image, not by id: a page from it sorts every message of the chat.
The cost is one more index entry per broadcast row (bench/broadcast measures it; docs/api.md
has the figures). On PostgreSQL the index is built CONCURRENTLY, so sends and reads go on while
it is built on a large table; hence a migration outside a transaction.
"""

from django.db import migrations, models

INDEX = models.Index(fields=["chat", "id"], name="message_chat_id_id")


def add_index(apps, schema_editor):
    message = apps.get_model("chat", "Message")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.add_index(message, INDEX, concurrently=True)
    else:
        schema_editor.add_index(message, INDEX)


def remove_index(apps, schema_editor):
    message = apps.get_model("chat", "Message")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.remove_index(message, INDEX, concurrently=True)
    else:
        schema_editor.remove_index(message, INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        # 0002 when written; main's latest since (two leaves would stop `migrate`).
        ("chat", "0004_image_integrity"),
    ]

    operations = [
        migrations.AddField(
            model_name="chat",
            name="last_read_message_id",
            field=models.BigIntegerField(db_default=0, default=0, editable=False),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="message", index=INDEX)],
            database_operations=[migrations.RunPython(add_index, remove_index, elidable=False)],
        ),
    ]
