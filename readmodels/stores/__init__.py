"""Clients of the read side's stores: Elasticsearch and Redis."""

from contextvars import ContextVar


class StoreUnavailable(Exception):
    """A store did not answer. Not the rows' fault: retry later, never dead-letter."""


# The monotonic time by which the projected read being served must have its answer.
# Set around the read itself (readmodels.api.consistency); store clients bound every
# call by what is left of it instead of their fixed store timeout.
read_deadline: ContextVar[float | None] = ContextVar("read_deadline", default=None)


class StoreSlow(StoreUnavailable):
    """A store answered too late (a timeout): busy, not down. Retry soon, do not back off."""
