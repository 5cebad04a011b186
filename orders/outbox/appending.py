"""Appending to the outbox: one row per aggregate a command changed, in the command's transaction.

The row commits with the change or not at all. After the commit, `outbox_committed` is
sent: only a wake-up for the projectors (their periodic sweep finds every row anyway).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from orders.models import OutboxMessage
from orders.outbox.positions import Position
from orders.signals import outbox_committed
from shop.web.request_ids import current_request_id


@dataclass(frozen=True)
class Change:
    """What a command changed in one aggregate, to be appended to the outbox."""

    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    event_type: str
    partition_key: str
    payload: dict


def benchmark_turned_the_outbox_off() -> bool:
    """Only a benchmark turns the outbox off (to measure what it costs); never production."""
    return not settings.SHOP.get("OUTBOX_ENABLED", True)


_INSERT_COLUMNS = (
    "aggregate_type, aggregate_id, aggregate_version, event_type, partition_key, payload, "
    "request_id"
)


def append(changes: list[Change]) -> Position:
    """Append the changes in the caller's transaction; return the last row's position."""
    statement, params = insert_statement(changes)
    if statement is None:
        return Position.start()
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        rows = cursor.fetchall()
    return appended(changes, rows)


def insert_statement(changes: list[Change]) -> tuple[str | None, list]:
    """The INSERT of these changes' rows, RETURNING (position, xid::text) per row.

    For a command that sends it in one statement with its own writes (a data-modifying
    WITH), then hands the rows to appended(). None when a benchmark turned the outbox off.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox rows must be appended inside the command's transaction")
    if not changes:
        raise ValueError("a command that changed nothing must not append to the outbox")
    if benchmark_turned_the_outbox_off():
        return None, []
    request_id = current_request_id.get()
    values_sql = ", ".join(["(%s, %s, %s, %s, %s, %s::jsonb, %s)"] * len(changes))
    params: list = []
    for change in changes:
        params += [
            change.aggregate_type,
            str(change.aggregate_id),
            change.aggregate_version,
            change.event_type,
            str(change.partition_key),
            json.dumps(change.payload, separators=(",", ":"), default=str),
            request_id,
        ]
    return (
        f"INSERT INTO {OutboxMessage._meta.db_table} ({_INSERT_COLUMNS}) "
        f"VALUES {values_sql} RETURNING position, xid::text",
        params,
    )


def appended(changes: list[Change], rows: list[tuple[int, str]]) -> Position:
    """The position of the rows insert_statement() wrote; wakes the projectors on commit."""
    last_position, xid = max(rows)
    aggregate_types = frozenset(change.aggregate_type for change in changes)
    position = Position(int(xid), last_position)
    # Only a wake-up: if it is lost (crash right after commit, broker down), the
    # projectors' periodic sweep still finds the rows.
    transaction.on_commit(
        lambda: outbox_committed.send_robust(
            sender=Change, aggregate_types=aggregate_types, position=position
        )
    )
    return position
