"""Rows and a bucket listing, both in key order, merged as two streams: what verify_images compares.

Like `rclone check` and restic: a ListObjectsV2 page gives 1,000 keys with their size and ETag
in one request, so an object whose listing entry matches what its row recorded needs no request
of its own. Memory holds one batch of rows and two pages of keys, whatever the bucket's size.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import F, QuerySet
from django.db.models.functions import Collate

from chat.images.objects import StoredObject

# Objects no row names, handed on at most this many at a time.
UNNAMED_PAGE = 1000


@dataclass(frozen=True, slots=True)
class ListedRow:
    """A row and its entry in the listing (None: the listing has no such key)."""

    row: Any
    listed: StoredObject | None


def rows_by_key(rows: QuerySet, *, batch_size: int, key_field: str = "file") -> Iterator[list]:
    """rows (non-empty key_field) in the byte order S3 lists keys, a batch per query from the last key read.

    PostgreSQL sorts by `COLLATE "C"` (bytes), the order of migration 0009's index; SQLite
    compares bytes already. Rows with the same key (none are expected) come in id order.
    """
    key: Collate | F = Collate(F(key_field), "C") if connection.vendor == "postgresql" else F(key_field)
    ordered = rows.exclude(**{key_field: ""}).annotate(listing_key=key).order_by("listing_key", "pk")
    last: tuple[str, int] | None = None
    while True:
        query = ordered
        if last is not None:
            query = query.filter(listing_key__gte=last[0]).exclude(listing_key=last[0], pk__lte=last[1])
        batch = list(query[:batch_size])
        if not batch:
            return
        yield batch
        last = (batch[-1].listing_key, batch[-1].pk)


def merge_by_key(
    *, row_batches: Iterable[list], listing: Iterable[StoredObject], key_of=lambda row: row.listing_key
) -> Iterator[tuple[list[ListedRow], list[StoredObject]]]:
    """For each batch of rows: each row with its listed object, and the objects passed on the way that no row names.

    Both inputs must be in the same (byte) order. Objects after the last row come with a final
    empty batch. An object named by several rows is given to each and is never unnamed.

    The key is rows_by_key's listing_key, a plain string, not row.file.name: Django's FieldFile
    and its row refer to each other, so a row whose file was read is freed only by a full garbage
    collection, not when its batch goes. Every row read that way piled up until one ran (a whole
    batch of Image, ModelState and FieldFile objects per batch, by the thousand).
    """
    objects = iter(listing)
    current = next(objects, None)
    last_matched: str | None = None
    for batch in row_batches:
        pairs: list[ListedRow] = []
        unnamed: list[StoredObject] = []
        for row in batch:
            key = key_of(row)
            while current is not None and current.key < key:
                if current.key != last_matched:
                    unnamed.append(current)
                    if len(unnamed) >= UNNAMED_PAGE:
                        # Thousands of objects between two rows: handed on now, memory stays bounded.
                        yield [], unnamed
                        unnamed = []
                current = next(objects, None)
            if current is not None and current.key == key:
                pairs.append(ListedRow(row=row, listed=current))
                last_matched = key
            else:
                pairs.append(ListedRow(row=row, listed=None))
        yield pairs, unnamed
    unnamed = []
    while current is not None:
        if current.key != last_matched:
            unnamed.append(current)
            if len(unnamed) >= UNNAMED_PAGE:
                yield [], unnamed
                unnamed = []
        current = next(objects, None)
    if unnamed:
        yield [], unnamed
