"""The transactional outbox: appending rows inside a command, and reading them in commit order.

A bigserial position is taken at INSERT, not at COMMIT, so a reader that followed
positions alone could pass a row whose transaction commits later and never see it.
Each row records its transaction id (xid8). A reader only returns rows whose xid is
below the xmin of its snapshot (every transaction below it has ended, so no row with
such an xid can still appear) and walks them in (xid, position) order. Checkpoints and
consistency tokens are that pair.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core import signing
from django.db import connection, transaction

from orders.models import OutboxMessage
from orders.signals import outbox_committed
from shop.web.request_ids import current_request_id

# Larger than any position a bigserial will hand out; used as "every row of this xid".
MAX_POSITION = 2**63 - 1



@dataclass(frozen=True, order=True)
class Position:
    """A place in commit order: every row at or before (xid, position) is covered."""

    xid: int
    position: int

    @classmethod
    def start(cls) -> Position:
        return cls(0, 0)

    def covers(self, other: Position) -> bool:
        return (self.xid, self.position) >= (other.xid, other.position)


class InvalidToken(ValueError):
    pass


TOKEN_PREFIX = "ct2"
# A token is signed so that a client cannot make one up: a forged "future" position
# would hold every read that carries it for its whole wait. The salt keeps these
# signatures apart from anything else signed with SECRET_KEY; Signer verifies in
# constant time and also accepts signatures made with SECRET_KEY_FALLBACKS, so tokens
# in flight survive a key rotation for as long as the old key stays a fallback.
_TOKEN_SALT = "orders.outbox.consistency-token"


def _signer() -> signing.Signer:
    return signing.Signer(salt=_TOKEN_SALT, algorithm="sha256")


def encode_token(position: Position) -> str:
    """Return the opaque, signed X-Consistency-Token for a commit position."""
    signed = _signer().sign(f"{TOKEN_PREFIX}.{position.xid}.{position.position}")
    return base64.urlsafe_b64encode(signed.encode()).decode().rstrip("=")


def decode_token(token: str) -> Position:
    """Return the position of a token made by encode_token, or raise InvalidToken."""
    try:
        token = token.strip()
        padded = token + "=" * (-len(token) % 4)
        signed = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
        raw = _signer().unsign(signed)
        prefix, xid, position = raw.split(".")
        if prefix != TOKEN_PREFIX:
            raise ValueError(prefix)
        result = Position(int(xid), int(position))
    except (ValueError, UnicodeError, binascii.Error, signing.BadSignature):
        raise InvalidToken("not a consistency token issued by this shop") from None
    if not (0 <= result.xid < 2**63 and 0 <= result.position <= MAX_POSITION):
        raise InvalidToken("not a consistency token issued by this shop")
    return result


@dataclass(frozen=True)
class Change:
    """What a command changed in one aggregate, to be appended to the outbox."""

    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    event_type: str
    partition_key: str
    payload: dict


def outbox_enabled() -> bool:
    # Only benchmarks turn it off, to measure what the outbox costs.
    return settings.SHOP.get("OUTBOX_ENABLED", True)


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
    WITH), then hands the rows to appended(). None when benchmarks turned the outbox off.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox rows must be appended inside the command's transaction")
    if not changes:
        raise ValueError("a command that changed nothing must not append to the outbox")
    if not outbox_enabled():
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


def safe_horizon() -> int:
    """Return the xid below which every transaction has ended (the snapshot's xmin)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        return cursor.fetchone()[0]


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

    One statement, one round trip: the horizon is the xmin of the statement's own
    snapshot, so every xid below it had ended when that snapshot was taken and the
    rows read with the same snapshot are all of theirs. The statement also reads one
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
    table = OutboxMessage._meta.db_table
    mine = " AND ".join(filters)
    # `held` is computed once (an uncorrelated CTE, not a subquery per row), and the
    # horizon is an init-plan parameter there, so its index scan starts at the horizon
    # (a complete batch's checkpoint is just below it) instead of at the outbox's start.
    cursor_sql = (
        "WITH h AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon), "
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


def high_water_mark() -> Position:
    """Return the furthest position a reader can safely reach right now."""
    return Position(safe_horizon() - 1, MAX_POSITION)


def pending_count(after: Position, *, aggregate_types: list[str] | None = None) -> int:
    """Count committed-or-running rows after `after` (what a reader still has to do)."""
    where = ["(xid, position) > (%s::text::xid8, %s)"]
    params: list = [str(after.xid), after.position]
    if aggregate_types is not None:
        where.append("aggregate_type = ANY(%s)")
        params.append(list(aggregate_types))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {OutboxMessage._meta.db_table} WHERE {' AND '.join(where)}",
            params,
        )
        return cursor.fetchone()[0]
