"""Images fetched from the photo API, one chat per user, and the messages broadcast to chats."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Now


class ImageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    STORED = "stored", "Stored"
    FAILED = "failed", "Failed"
    # Set by verify_images: the row had a stored copy that is gone or not the bytes recorded.
    MISSING = "missing", "Missing"
    CORRUPT = "corrupt", "Corrupt"
    # Its copy was missing or corrupt and the source no longer has it: nothing left to repair from.
    LOST = "lost", "Lost"


# Rows that name a stored object verify_images checks; only STORED is ever served or sent.
VERIFIABLE_STATUSES = (ImageStatus.STORED, ImageStatus.MISSING, ImageStatus.CORRUPT)


class Image(models.Model):
    """A photo from the photo API and the copy of its bytes kept in object storage."""

    photo_id = models.BigIntegerField(db_index=True, help_text="The photo API's id.")
    source_url = models.URLField(max_length=2048, unique=True)
    title = models.CharField(max_length=500, blank=True)
    description = models.TextField(blank=True)
    api_user_id = models.BigIntegerField(null=True, blank=True, help_text="The photo API's user field.")

    status = models.CharField(max_length=16, choices=ImageStatus.choices, default=ImageStatus.PENDING, db_index=True)
    file = models.FileField(max_length=512, blank=True, help_text="Key of the stored copy in object storage.")
    content_type = models.CharField(max_length=100, blank=True)
    byte_size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    stored_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    verified_at = models.DateTimeField(
        null=True, blank=True, help_text="When verify_images last compared the stored copy with this row."
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # A row that says "stored" always names the object it stored.
            models.CheckConstraint(
                condition=~Q(status=ImageStatus.STORED) | (~Q(file="") & Q(stored_at__isnull=False)),
                name="image_stored_has_file",
            ),
            # Missing, corrupt and lost describe a copy that was stored: they keep its key.
            models.CheckConstraint(
                condition=~Q(status__in=[ImageStatus.MISSING, ImageStatus.CORRUPT, ImageStatus.LOST]) | ~Q(file=""),
                name="image_checked_has_file",
            ),
        ]

    def __str__(self):
        return self.title or self.source_url


class Chat(models.Model):
    """The one chat each user has."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat")
    created_at = models.DateTimeField(auto_now_add=True)
    # The read state, once per chat: every message with a larger id is unread. A watermark,
    # not a foreign key (a deleted message leaves it valid), so a broadcast writes nothing here.
    last_read_message_id = models.BigIntegerField(default=0, db_default=0, editable=False)

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


class BroadcastStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


UNFINISHED_BROADCAST_STATUSES = (BroadcastStatus.QUEUED, BroadcastStatus.RUNNING)


class Broadcast(models.Model):
    """The audit record of one "send images to all chats"; its work is its chunks (BroadcastChunk).

    While a broadcast runs, its progress is read from its chunks; the chunk that finishes last
    writes the totals here with the final status, in one conditional UPDATE.
    """

    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    images = models.ManyToManyField(Image, related_name="broadcasts")
    image_count = models.PositiveIntegerField(default=0)
    unsent_image_count = models.PositiveIntegerField(
        default=0, help_text="Selected images left out because they had no stored copy."
    )
    chunk_count = models.PositiveIntegerField(default=0)
    chat_count = models.PositiveIntegerField(default=0)
    created_count = models.PositiveBigIntegerField(default=0)
    skipped_count = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=BroadcastStatus.choices, default=BroadcastStatus.QUEUED)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=UNFINISHED_BROADCAST_STATUSES) | Q(finished_at__gte=F("started_at")),
                name="broadcast_finished_after_start",
            ),
        ]
        indexes = [
            # The sweeper looks for unfinished broadcasts only: a partial index stays tiny.
            models.Index(
                fields=["status"], name="broadcast_unfinished", condition=Q(status__in=UNFINISHED_BROADCAST_STATUSES)
            ),
        ]

    def __str__(self):
        return f"Broadcast #{self.pk}"

    @property
    def duration_ms(self) -> int | None:
        if self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


class ChunkStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class BroadcastChunk(models.Model):
    """The chats with after_chat_id < id <= up_to_chat_id of one broadcast: one unit of work.

    A runner claims a chunk with a lease (leased_until, on the database's clock); a chunk whose
    lease ran out while it says running lost its runner, and anyone may claim it again. Its
    messages and its "succeeded" commit in one transaction, so the counts are those of the one
    run that committed.
    """

    broadcast = models.ForeignKey(Broadcast, on_delete=models.CASCADE, related_name="chunks")
    after_chat_id = models.BigIntegerField()
    up_to_chat_id = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=ChunkStatus.choices, default=ChunkStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Times a runner claimed it.")
    lease_owner = models.CharField(max_length=255, blank=True, help_text="Task id or process of the last claim.")
    # New at every claim: only the run holding the latest claim can commit the chunk.
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    worker = models.CharField(max_length=255, blank=True, help_text="Host and process of the last claim.")
    leased_until = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True, help_text="Last handed to the broker.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    chat_count = models.PositiveIntegerField(default=0)
    created_count = models.PositiveBigIntegerField(default=0)
    skipped_count = models.PositiveBigIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["broadcast", "after_chat_id"]
        constraints = [
            models.UniqueConstraint(fields=["broadcast", "after_chat_id"], name="chunk_unique_range_per_broadcast"),
            models.CheckConstraint(condition=Q(up_to_chat_id__gt=F("after_chat_id")), name="chunk_range_not_empty"),
            models.CheckConstraint(
                condition=~Q(status=ChunkStatus.RUNNING) | Q(leased_until__isnull=False),
                name="chunk_running_has_lease",
            ),
        ]
        indexes = [
            models.Index(
                fields=["leased_until"], name="chunk_running_lease", condition=Q(status=ChunkStatus.RUNNING)
            ),
        ]

    def __str__(self):
        return f"Chunk {self.after_chat_id}–{self.up_to_chat_id} of broadcast #{self.broadcast_id}"
