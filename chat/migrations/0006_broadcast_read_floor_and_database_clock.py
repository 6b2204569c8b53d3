"""Issue 16: a chunk's read floor, and a broadcast's start on the database's clock.

BroadcastChunk.message_ids_above is written at each claim: every message id the claim's run
writes is above it. A reader is shown no message of a chat above the lowest value of the
running chunks that cover the chat, so no message can commit below one a reader was shown
(docs/api.md, "Read state"). Adding a nullable column rewrites nothing.

Broadcast.started_at took the app server's clock (auto_now_add) while finished_at takes the
database's (Now()), and a CHECK compares them: with the app's clock ahead, the close failed after
the chunk committed. It now defaults to the database's now(). Rows written before, still
unfinished and started "in the future" by the database's clock, are brought back to now() so
that they can close (a set-based UPDATE through the partial index of unfinished broadcasts).
"""

from django.db import migrations, models
from django.db.models.functions import Now

UNFINISHED = ("queued", "running")


def started_at_not_in_the_future(apps, schema_editor):
    broadcast = apps.get_model("chat", "Broadcast")
    broadcast.objects.using(schema_editor.connection.alias).filter(status__in=UNFINISHED, started_at__gt=Now()).update(
        started_at=Now()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0005_chat_read_state"),
    ]

    operations = [
        migrations.AddField(
            model_name="broadcastchunk",
            name="message_ids_above",
            field=models.BigIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddIndex(
            model_name="broadcastchunk",
            index=models.Index(
                condition=models.Q(status="running"),
                fields=["after_chat_id", "up_to_chat_id"],
                name="chunk_running_chats",
            ),
        ),
        migrations.AlterField(
            model_name="broadcast",
            name="started_at",
            field=models.DateTimeField(db_default=Now(), editable=False),
        ),
        migrations.RunPython(started_at_not_in_the_future, migrations.RunPython.noop, elidable=True),
    ]
