"""Renditions: smaller WebP copies of each stored image, one row per width, and the image's renditions state.

Adding the two columns with constant defaults rewrites nothing (PostgreSQL 11+ keeps the default
in the catalogue); no index on renditions_status: only the backfill filters on it, once.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0007_broadcast_set_replication_role"),
    ]

    operations = [
        migrations.AddField(
            model_name="image",
            name="renditions_error",
            field=models.TextField(blank=True, help_text="Why the renditions could not be made, when they failed."),
        ),
        migrations.AddField(
            model_name="image",
            name="renditions_status",
            field=models.CharField(
                choices=[("pending", "Pending"), ("ready", "Ready"), ("failed", "Failed")],
                default="pending",
                help_text="Whether the smaller WebP copies (renditions) of the stored copy exist.",
                max_length=16,
            ),
        ),
        migrations.CreateModel(
            name="ImageRendition",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("width", models.PositiveIntegerField()),
                ("height", models.PositiveIntegerField()),
                ("file", models.CharField(help_text="Key of the rendition in object storage.", max_length=512)),
                ("content_type", models.CharField(default="image/webp", max_length=100)),
                ("byte_size", models.BigIntegerField()),
                ("sha256", models.CharField(max_length=64)),
                (
                    "etag",
                    models.CharField(blank=True, help_text="The storage's ETag at upload (S3 only).", max_length=100),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "image",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="renditions", to="chat.image"
                    ),
                ),
            ],
            options={
                "ordering": ["image_id", "width"],
                "constraints": [
                    models.UniqueConstraint(fields=("image", "width"), name="image_rendition_one_per_width")
                ],
            },
        ),
    ]
