"""Keeping the outbox in shape: its size, retention deletes, and the deletes after a restore.

Who may delete what is decided by the read side (it knows where every reader stands);
the statements are here, with the table's other statements. Deletes go in small
batches so they never hold long locks.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection

from orders.models import OutboxMessage
from orders.outbox.positions import Position

TABLE = OutboxMessage._meta.db_table


def size() -> int:
    """Rows in the outbox: exact when small, the planner's estimate when large."""
    with connection.cursor() as cursor:
        # Exact counts of a large outbox are too slow to scrape.
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [TABLE]
        )
        estimate = cursor.fetchone()[0]
    if estimate is None or estimate < 100_000:
        return OutboxMessage.objects.count()
    return estimate


def delete_passed(
    *, up_to: Position, created_before: datetime, keep: list[int], batch_size: int,
    max_batches: int,
) -> int:
    """Delete rows at or before `up_to` created before `created_before`, except `keep`."""
    deleted = 0
    for _ in range(max_batches):
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {TABLE} WHERE position IN ("
                f"  SELECT position FROM {TABLE} "
                "   WHERE (xid, position) <= (%s::text::xid8, %s) AND created_at < %s "
                "   AND NOT (position = ANY(%s)) ORDER BY xid, position LIMIT %s)",
                [str(up_to.xid), up_to.position, created_before, keep, batch_size],
            )
            count = cursor.rowcount
        deleted += count
        if count < batch_size:
            break
    return deleted


def next_xid() -> int:
    """This cluster's next transaction id (assigns none itself)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
        return cursor.fetchone()[0]


def delete_rows_of_another_cluster(*, batch_size: int = 10_000) -> int:
    """Delete the rows numbered at or above this cluster's next xid: after a restore from a
    dump into a new cluster, every such row was written by the old one."""
    deleted = 0
    while True:
        with connection.cursor() as cursor:
            # Each statement compares with its own snapshot's next xid: a visible row
            # numbered at or above it cannot have been written by this cluster.
            cursor.execute(
                f"DELETE FROM {TABLE} WHERE position IN ("
                f"  SELECT position FROM {TABLE} "
                "   WHERE xid >= pg_snapshot_xmax(pg_current_snapshot()) LIMIT %s)",
                [batch_size],
            )
            count = cursor.rowcount
        deleted += count
        if count < batch_size:
            return deleted
