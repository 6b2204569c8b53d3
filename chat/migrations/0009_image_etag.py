"""Image.etag, and an index that reads image rows in the order a bucket lists their keys.

verify_images compares a listing (ListObjectsV2: key, size, ETag, 1,000 keys a request) with the
rows, merging two streams sorted the same way. S3 lists keys in UTF-8 byte order; PostgreSQL
sorts text by the database's collation, so the rows are read by `file COLLATE "C"` (byte order)
through this index, a batch at a time from the last key (a keyset cursor). SQLite compares text
bytewise already. Built CONCURRENTLY on PostgreSQL: fetches and reads go on meanwhile.

Rows stored before this change have no ETag: the first verify checks each one's bytes as before
(the sha256 in the object's metadata, or the bytes hashed when there is none) and records the
listing's ETag once they match, so later runs compare listings alone.
"""

from django.db import migrations, models

INDEX_NAME = "image_file_bytewise"


def add_index(apps, schema_editor):
    table = schema_editor.quote_name(apps.get_model("chat", "Image")._meta.db_table)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX_NAME} ON {table} ((file COLLATE \"C\")) WHERE file <> ''"
        )
    else:
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {INDEX_NAME} ON {table} (file) WHERE file <> ''")


def remove_index(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {INDEX_NAME}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("chat", "0008_renditions"),
    ]

    operations = [
        migrations.AddField(
            model_name="image",
            name="etag",
            field=models.CharField(
                blank=True,
                max_length=100,
                help_text="The storage's ETag of the stored copy (no quotes): what verify_images compares with a listing.",
                default="",
                db_default="",
            ),
        ),
        migrations.RunPython(add_index, remove_index, elidable=False),
    ]
