"""The read side's stores: Elasticsearch and Redis (clients in es and redis_store, one
interface over both in adapters), and what every store has in common."""

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Doc:
    """A document of a view: its key, its version (the write gate) and its body."""

    key: str
    version: int
    body: dict


class StoreUnavailable(Exception):
    """A store did not answer. Not the rows' fault: retry later, never dead-letter."""


# The monotonic time by which the projected read being served must have its answer.
# Set around the read itself (readmodels.api.base); store clients bound every
# call by what is left of it instead of their fixed store timeout.
read_deadline: ContextVar[float | None] = ContextVar("read_deadline", default=None)


class StoreSlow(StoreUnavailable):
    """A store answered too late (a timeout): busy, not down. Retry soon, do not back off."""
