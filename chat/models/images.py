"""Images fetched from the photo API and the copies of their bytes kept in object storage."""

from django.db import models
from django.db.models import Q


class ImageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    STORED = "stored", "Stored"
    FAILED = "failed", "Failed"
    # Set by verify_images: the row had a stored copy that is gone or not the bytes recorded.
    MISSING = "missing", "Missing"
    CORRUPT = "corrupt", "Corrupt"
    # Its copy was missing or corrupt and the source no longer has it: nothing left to repair from.
    LOST = "lost", "Lost"


class RenditionsStatus(models.TextChoices):
    """Whether an image's smaller WebP copies exist; the original is served whatever this says."""

    PENDING = "pending", "Pending"
    READY = "ready", "Ready"
    # Making them failed (reason in renditions_error): the original stays stored and usable.
    FAILED = "failed", "Failed"


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
    etag = models.CharField(
        max_length=100,
        blank=True,
        default="",
        # Writers that insert rows by SQL (benchmarks, bulk seeds) need not name it.
        db_default="",
        help_text="The storage's ETag of the stored copy (no quotes): what verify_images compares with a listing.",
    )
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    stored_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    verified_at = models.DateTimeField(
        null=True, blank=True, help_text="When verify_images last compared the stored copy with this row."
    )

    renditions_status = models.CharField(
        max_length=16,
        choices=RenditionsStatus.choices,
        default=RenditionsStatus.PENDING,
        help_text="Whether the smaller WebP copies (renditions) of the stored copy exist.",
    )
    renditions_error = models.TextField(blank=True, help_text="Why the renditions could not be made, when they failed.")

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


class ImageRendition(models.Model):
    """A smaller WebP copy of an image's stored copy, under a key named by its own sha256 (content-addressed)."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="renditions")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    file = models.CharField(max_length=512, help_text="Key of the rendition in object storage.")
    content_type = models.CharField(max_length=100, default="image/webp")
    byte_size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    etag = models.CharField(max_length=100, blank=True, help_text="The storage's ETag at upload (S3 only).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["image_id", "width"]
        constraints = [
            # One rendition per width: a rebuild replaces the row, never adds a second.
            models.UniqueConstraint(fields=["image", "width"], name="image_rendition_one_per_width"),
        ]

    def __str__(self):
        return f"{self.image_id} at {self.width}px"
