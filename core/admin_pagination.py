"""A paginator that never counts every row of a large table on a page view."""

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

# Counting stops here: a filtered list of more rows says "100000" and pages that far.
COUNT_CAP = 100_000


class EstimatedCountPaginator(Paginator):
    """PostgreSQL's planner estimate for a whole big table; a capped exact count otherwise."""

    @cached_property
    def count(self) -> int:
        # The admin pages querysets; the type says any sequence.
        queryset: QuerySet = self.object_list  # type: ignore[assignment]
        if not queryset.query.where:
            estimate = _estimated_row_count(queryset)
            if estimate is not None and estimate >= COUNT_CAP:
                return estimate
        # LIMIT inside the count: the database stops scanning at the cap. values("pk")
        # drops annotations (a per-row subquery must not run for every counted row).
        return queryset.order_by().values("pk")[:COUNT_CAP].count()


def _estimated_row_count(queryset: QuerySet) -> int | None:
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
