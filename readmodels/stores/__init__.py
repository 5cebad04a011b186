"""Clients of the read side's stores: Elasticsearch and Redis."""


class StoreUnavailable(Exception):
    """A store did not answer. Not the rows' fault: retry later, never dead-letter."""
