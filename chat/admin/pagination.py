"""A paginator that does not COUNT(*) a whole large table on every page view."""

from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

# Below this many rows an exact count is cheap enough.
EXACT_COUNT_BELOW = 100_000


class EstimatedCountPaginator(Paginator):
    """Exact counts for filtered lists; PostgreSQL's planner estimate for a whole big table."""

    @cached_property
    def count(self):
        queryset = self.object_list
        if not queryset.query.where:
            estimate = _estimated_row_count(queryset)
            if estimate is not None and estimate >= EXACT_COUNT_BELOW:
                return estimate
        return super().count


def _estimated_row_count(queryset) -> int | None:
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [queryset.model._meta.db_table],
        )
        row = cursor.fetchone()
    # reltuples is -1 until the table has been vacuumed or analysed once.
    return row[0] if row and row[0] >= 0 else None
