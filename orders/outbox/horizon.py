"""The outbox's horizon: the oldest transaction that could still write this database's outbox.

A reader passes rows only below the horizon: every transaction below it has ended, so
no row with a smaller xid can still appear. The snapshot's xmin would do, but it counts
the write transactions of every database in the PostgreSQL cluster, and a transaction
in another database can never write this one's outbox: a colleague's idle psql session
elsewhere must not freeze every view. So the horizon is the oldest of the snapshot's
running xids that belong to this database, or that cannot be placed (counted as holding,
to be safe), and the snapshot's xmax when there is none.

A running xid is placed by the backend running it (pg_stat_activity.backend_xid and
datname) or, for a prepared transaction, by pg_prepared_xacts. Both are read in the
same statement as the snapshot; an xid they no longer show (its transaction just ended)
counts as holding, which only delays a row by a statement. pg_stat_activity and the
snapshot carry xids of 32 and 64 bits: running xids are within 2^31 of each other, so
their low 32 bits name them.

The transaction that holds the horizon is named (horizon_holder) for operators: it is
bounded for the shop's own sessions by idle_in_transaction_session_timeout (settings),
not for others'.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from orders.outbox.positions import MAX_POSITION, Position

# xids (low 32 bits, as bigint) of transactions running in another database: a backend's
# own database is fixed for its life, so its xid can write nowhere else. Functions, not
# the pg_stat_activity and pg_prepared_xacts views: planning their joins cost more than
# the rest of a batch's read.
_ELSEWHERE = """
    SELECT a.backend_xid::text::bigint FROM pg_stat_get_activity(NULL) a
     WHERE a.backend_xid IS NOT NULL
       AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database())
    UNION ALL
    SELECT p.transaction::text::bigint
      FROM pg_prepared_xact() p(transaction, gid, prepared, ownerid, dbid)
     WHERE p.dbid <> (SELECT oid FROM pg_database WHERE datname = current_database())
"""

# The snapshot's running xids that cannot be placed in another database, as xid8.
_HOLDING_XIDS = """
    SELECT x FROM pg_snapshot_xip({snapshot}) AS x
     WHERE (x::text::bigint & 4294967295) NOT IN (""" + _ELSEWHERE + """)
"""


def horizon_sql(snapshot: str = "pg_current_snapshot()") -> str:
    """A scalar SQL expression (xid8): this database's horizon in `snapshot`."""
    holding = _HOLDING_XIDS.format(snapshot=snapshot)
    return f"coalesce((SELECT min(x) FROM ({holding}) held), pg_snapshot_xmax({snapshot}))"


def safe_horizon() -> int:
    """The xid below which every transaction that could write this outbox has ended."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT ({horizon_sql('s.snap')})::text::bigint "
            "FROM (SELECT pg_current_snapshot() AS snap) s"
        )
        return cursor.fetchone()[0]


def high_water_mark() -> Position:
    """The furthest position a reader can safely reach right now."""
    return Position(safe_horizon() - 1, MAX_POSITION)


@dataclass(frozen=True)
class HorizonHolder:
    """The transaction that holds the outbox horizon back, as operators need to name it."""

    xid: int
    pid: int | None  # None: a prepared transaction, or a backend no longer shown
    database: str | None
    application_name: str | None
    state: str | None  # "active", "idle in transaction", ...; "prepared" for 2PC
    started_at: datetime | None
    age_seconds: float | None
    prepared_gid: str | None = None

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid is not None else (
            f"prepared transaction {self.prepared_gid!r}" if self.prepared_gid else "an unknown backend"
        )
        parts = [who, f"database {self.database or '?'}"]
        if self.application_name:
            parts.append(f"application {self.application_name!r}")
        if self.state:
            parts.append(f"state {self.state}")
        age = f"{self.age_seconds:.1f} s" if self.age_seconds is not None else "unknown"
        return f"xid {self.xid} ({', '.join(parts)}), open for {age}"


def holder_sql() -> str:
    """The statement that reads the horizon's holder (no row when nothing holds it)."""
    holding = _HOLDING_XIDS.format(snapshot="(SELECT snap FROM s)")
    return (
        "WITH s AS MATERIALIZED (SELECT pg_current_snapshot() AS snap), "
        f"h AS MATERIALIZED (SELECT min(x) AS xid FROM ({holding}) held) "
        "SELECT h.xid::text::bigint, a.pid, coalesce(a.datname, p.database), a.application_name, "
        "  CASE WHEN p.gid IS NOT NULL THEN 'prepared' ELSE a.state END, "
        "  coalesce(a.xact_start, p.prepared), "
        "  extract(epoch FROM clock_timestamp() - coalesce(a.xact_start, p.prepared)), p.gid "
        "FROM h "
        "LEFT JOIN pg_stat_activity a "
        "  ON a.backend_xid::text::bigint = (h.xid::text::bigint & 4294967295) "
        "LEFT JOIN pg_prepared_xacts p "
        "  ON p.transaction::text::bigint = (h.xid::text::bigint & 4294967295) "
        "WHERE h.xid IS NOT NULL LIMIT 1"
    )


def holder_from_row(row) -> HorizonHolder | None:
    if row is None:
        return None
    xid, pid, database, application, state, started_at, age, gid = row
    return HorizonHolder(
        xid=xid, pid=pid, database=database, application_name=application or None,
        state=state, started_at=started_at, age_seconds=None if age is None else float(age),
        prepared_gid=gid,
    )


def horizon_holder() -> HorizonHolder | None:
    """The oldest running transaction that holds this database's outbox horizon, if any."""
    with connection.cursor() as cursor:
        cursor.execute(holder_sql())
        return holder_from_row(cursor.fetchone())
