"""Integrity states set by verify_images (missing, corrupt, lost) and when a row was last verified."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0003_broadcast_chunks"),
    ]

    operations = [
        migrations.AddField(
            model_name="image",
            name="verified_at",
            field=models.DateTimeField(
                blank=True, help_text="When verify_images last compared the stored copy with this row.", null=True
            ),
        ),
        migrations.AlterField(
            model_name="image",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("stored", "Stored"),
                    ("failed", "Failed"),
                    ("missing", "Missing"),
                    ("corrupt", "Corrupt"),
                    ("lost", "Lost"),
                ],
                db_index=True,
                default="pending",
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="image",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("status__in", ["missing", "corrupt", "lost"]), _negated=True),
                    models.Q(("file", ""), _negated=True),
                    _connector="OR",
                ),
                name="image_checked_has_file",
            ),
        ),
    ]
