"""Reading the outbox in commit order, and measuring what a reader has still to read.

A reader only returns rows whose xid is below the horizon of its snapshot (every
transaction below it that could write this outbox has ended, so no row with such an xid
can still appear: orders.outbox.horizon) and walks them in (xid, position) order
(orders.outbox.positions says why). A reader's place is
a Position; `segment` restricts a reader to the rows whose partition key hashes to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from orders.models import OutboxMessage
from orders.outbox.horizon import horizon_sql
from orders.outbox.positions import MAX_POSITION, Position

TABLE = OutboxMessage._meta.db_table


@dataclass(frozen=True)
class OutboxRow:
    position: int
    xid: int
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    event_type: str
    partition_key: str
    payload: dict
    created_at: datetime
    request_id: str

    @property
    def commit_position(self) -> Position:
        return Position(self.xid, self.position)


@dataclass(frozen=True)
class Batch:
    rows: list[OutboxRow]
    horizon: int
    # Where a reader that has handled every row of this batch may put its checkpoint.
    checkpoint_after: Position
    # Creation time of the first committed row after checkpoint_after that the reader
    # saw (held back behind an older transaction, or past the batch's limit), None when
    # there was none: the age of the oldest change not shown yet once this batch is.
    pending_since: datetime | None = None

    @property
    def complete(self) -> bool:
        """True when the batch holds every committed row up to the horizon."""
        return self.checkpoint_after == Position(self.horizon - 1, MAX_POSITION)


def segment_sql(segments: int) -> str:
    """SQL expression giving a row's segment (0..segments-1) from its partition key."""
    # mod(), not the % operator: this SQL is formatted with parameters.
    return f"mod(hashtextextended(partition_key, 0) & 9223372036854775807, {int(segments)})"


_ROW_COLUMNS = (
    "position, xid::text AS xid, aggregate_type, aggregate_id, aggregate_version, event_type, "
    "partition_key, payload, created_at, request_id"
)


def read_after(
    after: Position,
    *,
    limit: int,
    aggregate_types: list[str] | None = None,
    segment: tuple[int, int] | None = None,
) -> Batch:
    """Return up to `limit` committed rows after `after`, in commit-safe (xid, position) order.

    `segment` is (index, count): only rows whose partition key hashes to that segment.
    Rows of transactions still running, and everything after them, are left for later.

    One statement, one round trip: the horizon is taken from the statement's own
    snapshot, so every xid below it that could write here had ended when that snapshot
    was taken and the rows read with the same snapshot are all of theirs. The statement also reads one
    row more than `limit` (to know whether the batch is complete without a second
    query) and, for a complete batch, the first row at or above the horizon: the
    oldest change this reader has not shown yet (its lag), with no second query either.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    filters = ["TRUE"]
    params: list = []
    if aggregate_types is not None:
        filters.append("aggregate_type = ANY(%s)")
        params.append(list(aggregate_types))
    if segment is not None:
        index, count = segment
        filters.append(f"{segment_sql(count)} = %s")
        params.append(index)
    table = TABLE
    mine = " AND ".join(filters)
    # `held` is computed once (an uncorrelated CTE, not a subquery per row), and the
    # horizon is an init-plan parameter there, so its index scan starts at the horizon
    # (a complete batch's checkpoint is just below it) instead of at the outbox's start.
    cursor_sql = (
        f"WITH h AS MATERIALIZED (SELECT {horizon_sql()} AS horizon), "
        "held AS MATERIALIZED ("
        f"  SELECT created_at FROM {table} WHERE {mine} AND xid >= (SELECT horizon FROM h)"
        "   ORDER BY xid, position LIMIT 1"
        ") SELECT h.horizon::text, r.*, (SELECT created_at FROM held) FROM h LEFT JOIN LATERAL ("
        f"  SELECT {_ROW_COLUMNS} FROM {table} o WHERE {mine}"
        "   AND (o.xid, o.position) > (%s::text::xid8, %s) AND o.xid < h.horizon"
        # Qualified: a bare `xid` here would name the output column, `xid::text`, and
        # sort as text, where "1000" < "999" (a full batch would pass the 999s).
        "   ORDER BY o.xid, o.position LIMIT %s"
        ") r ON TRUE"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            cursor_sql,
            [*params, *params, str(after.xid), after.position, limit + 1],
        )
        fetched = cursor.fetchall()
    horizon = int(fetched[0][0])
    held_back_since = fetched[0][11]
    rows = [
        OutboxRow(
            position=r[1],
            xid=int(r[2]),
            aggregate_type=r[3],
            aggregate_id=r[4],
            aggregate_version=r[5],
            event_type=r[6],
            partition_key=r[7],
            payload=r[8] if isinstance(r[8], dict) else json.loads(r[8]),
            created_at=r[9],
            request_id=r[10],
        )
        for r in fetched
        if r[1] is not None
    ]
    if len(rows) <= limit:
        checkpoint = max(after, Position(horizon - 1, MAX_POSITION))
        pending_since = held_back_since
    else:
        pending_since = rows[limit].created_at
        rows = rows[:limit]
        checkpoint = rows[-1].commit_position
    return Batch(rows=rows, horizon=horizon, checkpoint_after=checkpoint,
                 pending_since=pending_since)


def _rows_of(after: Position, aggregate_types: list[str], segment: tuple[int, int] | None):
    """WHERE clause and parameters: a reader's rows (its aggregates, its segment) after `after`."""
    where = ["(xid, position) > (%s::text::xid8, %s)", "aggregate_type = ANY(%s)"]
    params: list = [str(after.xid), after.position, list(aggregate_types)]
    if segment is not None and segment[1] > 1:
        where.append(f"{segment_sql(segment[1])} = %s")
        params.append(segment[0])
    return " AND ".join(where), params


def first_pending_since(
    after: Position, *, aggregate_types: list[str], segment: tuple[int, int] | None = None
) -> datetime | None:
    """Creation time of the first row after `after` (committed or not, held back or not)."""
    where, params = _rows_of(after, aggregate_types, segment)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT created_at FROM {TABLE} WHERE {where} ORDER BY xid, position LIMIT 1",
            params,
        )
        row = cursor.fetchone()
    return row[0] if row else None


def rows_behind(
    after: Position,
    *,
    aggregate_types: list[str],
    segment: tuple[int, int] | None = None,
    cap: int | None = None,
) -> tuple[int, datetime | None]:
    """How many rows lie after `after` (up to `cap`), and the creation time of the oldest."""
    where, params = _rows_of(after, aggregate_types, segment)
    with connection.cursor() as cursor:
        if cap is None:
            cursor.execute(f"SELECT count(*), min(created_at) FROM {TABLE} WHERE {where}", params)
        else:
            # Walk the commit-order index from `after` and stop after `cap` rows: the cost
            # follows the cap, not how far behind the reader is (a full count of a reader
            # far behind scans everything after its place).
            cursor.execute(
                f"SELECT count(*), min(created_at) FROM (SELECT created_at FROM {TABLE} "
                f"WHERE {where} ORDER BY xid, position LIMIT %s) behind",
                [*params, cap],
            )
        count, oldest = cursor.fetchone()
    return count, oldest


def segment_of(partition_key: str, segments: int) -> int:
    """The segment (0..segments-1) a partition key belongs to, as segment_sql computes it."""
    if segments == 1:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {segment_sql(segments)} FROM (SELECT %s::text AS partition_key) k",
            [partition_key],
        )
        return cursor.fetchone()[0]
