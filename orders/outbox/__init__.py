"""The transactional outbox, and the only code that runs statements on its table.

- positions: Position, a place in commit order (xid, position), and why it is a pair.
- tokens: the consistency token, a signed Position (X-Consistency-Token).
- appending: Change and append(), inside a command's transaction.
- reading: read_after() in commit-safe order, and what a reader still has to read.
- upkeep: size, retention deletes, the deletes after a restore into a new cluster.

Both sides import what they use from here; the read side touches the table through
nothing else.
"""

from orders.outbox.appending import Change, append, appended, insert_statement
from orders.outbox.positions import MAX_POSITION, Position
from orders.outbox.reading import (
    Batch,
    OutboxRow,
    first_pending_since,
    high_water_mark,
    read_after,
    rows_behind,
    safe_horizon,
    segment_of,
    segment_sql,
)
from orders.outbox.tokens import InvalidToken, decode_token, encode_token

__all__ = [
    "MAX_POSITION", "Batch", "Change", "InvalidToken", "OutboxRow", "Position", "append",
    "appended", "decode_token", "encode_token", "first_pending_since", "high_water_mark",
    "insert_statement", "read_after", "rows_behind", "safe_horizon", "segment_of",
    "segment_sql",
]
