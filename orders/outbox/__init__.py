"""The transactional outbox, and the only code that runs statements on its table.

- positions: Position, a place in commit order (xid, position), and why it is a pair.
- tokens: the consistency token, an encrypted Position and its cluster (cluster).
- appending: Change and append(), inside a command's transaction.
- horizon: how far readers may go (the oldest transaction that could still write this
  database's outbox), and which transaction holds it.
- reading: read_after() in commit-safe order, and what a reader still has to read.
- upkeep: size, retention deletes, the deletes after a restore into a new cluster.

Both sides import what they use from here; the read side touches the table through
nothing else.
"""

from orders.outbox.appending import Change, append, appended, insert_statement
from orders.outbox.cluster import cluster_id
from orders.outbox.horizon import HorizonHolder, high_water_mark, horizon_holder, safe_horizon
from orders.outbox.positions import MAX_POSITION, Position
from orders.outbox.reading import (
    Batch,
    OutboxRow,
    first_pending_since,
    read_after,
    rows_behind,
    segment_of,
    segment_sql,
)
from orders.outbox.tokens import InvalidToken, TokenContent, decode_token, encode_token, read_token

__all__ = [
    "Batch",
    "Change",
    "HorizonHolder",
    "InvalidToken",
    "MAX_POSITION",
    "OutboxRow",
    "Position",
    "TokenContent",
    "append",
    "appended",
    "cluster_id",
    "decode_token",
    "encode_token",
    "first_pending_since",
    "high_water_mark",
    "horizon_holder",
    "insert_statement",
    "read_after",
    "read_token",
    "rows_behind",
    "safe_horizon",
    "segment_of",
    "segment_sql",
]
