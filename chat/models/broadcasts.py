"""Broadcasts of images to every chat, and the chunks that are their work."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Now

from chat.models.images import Image


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
    # On the database's clock, as finished_at (Now()) that the CHECK below compares it with:
    # an app server whose clock runs ahead must not make a finished broadcast unclosable.
    started_at = models.DateTimeField(db_default=Now(), editable=False)
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
    # Set at every claim: every message id the claim's run writes is above it (it draws its ids
    # after the claim committed). Readers see no message of the chunk's chats above the lowest of
    # the running chunks' values: chat/messaging/read_state.py, docs/api.md "Read state".
    message_ids_above = models.BigIntegerField(null=True, blank=True, editable=False)
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
            models.Index(fields=["leased_until"], name="chunk_running_lease", condition=Q(status=ChunkStatus.RUNNING)),
            # A reader's floor: the running chunks that cover a chat (a handful of rows at any time).
            models.Index(
                fields=["after_chat_id", "up_to_chat_id"],
                name="chunk_running_chats",
                condition=Q(status=ChunkStatus.RUNNING),
            ),
        ]

    def __str__(self):
        return f"Chunk {self.after_chat_id}–{self.up_to_chat_id} of broadcast #{self.broadcast_id}"
