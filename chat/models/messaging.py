"""One chat per user, and the messages in it."""

from django.conf import settings
from django.db import models
from django.db.models.functions import Now

from chat.models.images import Image


class Chat(models.Model):
    """The one chat each user has."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat")
    created_at = models.DateTimeField(auto_now_add=True)
    # The read state, once per chat: every message with a larger id is unread. A watermark,
    # not a foreign key (a deleted message leaves it valid), so a broadcast writes nothing here.
    last_read_message_id = models.BigIntegerField(default=0, db_default=0, editable=False)
    # The summary's counts, kept by the database's triggers on every write of a message or of the
    # watermark (migration 0010_chat_message_counts says how, and why they stay exact under races).
    message_count = models.BigIntegerField(default=0, db_default=0, editable=False)
    unread_count = models.BigIntegerField(default=0, db_default=0, editable=False)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"Chat of {self.user}"


class Message(models.Model):
    """A message in a chat; at most one per image per chat."""

    # No separate index on chat: the (chat, image) unique index leads with chat_id
    # and every extra index is paid for on each broadcast row.
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="messages", db_index=False)
    text = models.TextField()
    image = models.ForeignKey(
        Image, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages", db_index=False
    )
    created_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["chat", "image"], name="message_unique_image_per_chat"),
        ]
        indexes = [
            # A chat's messages newest first, a page at a time (keyset on id), and its unread
            # count (id > the read watermark) as index-only range scans: the same cost for a chat
            # of 10 messages or of 100,000. The (chat, image) index cannot order by id. Paid on
            # every broadcast row (migration 0005 says how much).
            models.Index(fields=["chat", "id"], name="message_chat_id_id"),
        ]

    def __str__(self):
        return self.text[:50]
