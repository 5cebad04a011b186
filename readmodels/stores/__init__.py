"""Clients of the read side's stores: Elasticsearch and Redis."""


class StoreUnavailable(Exception):
    """A store did not answer. Not the rows' fault: retry later, never dead-letter."""


class StoreSlow(StoreUnavailable):
    """A store answered too late (a timeout): busy, not down. Retry soon, do not back off."""
