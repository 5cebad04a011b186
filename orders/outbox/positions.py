"""A place in the outbox's commit order: the pair (xid, position).

A bigserial position is taken at INSERT, not at COMMIT, so positions alone do not give
the order in which rows become visible. Each row records its transaction id (xid8);
readers walk rows in (xid, position) order below a horizon that no running
transaction can write under (orders.outbox.reading). Checkpoints and consistency
tokens are such pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

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
