"""What can go wrong in a projector run, and whose fault it is: a server's, or a row's.

A store that does not answer or refuses writes as a whole (StoreUnavailable: the
stores map Redis OOM/READONLY/MISCONF and Elasticsearch 403/404/429/5xx to it), or a
PostgreSQL connection that fails, is an outage: the checkpoint stays and the segment
backs off; nothing is counted against the rows. Anything else may be a row's own
fault (readmodels.pipeline.blame finds out which).
"""

from __future__ import annotations

from django.db import InterfaceError, OperationalError

from orders.outbox import Position
from readmodels.stores import StoreUnavailable

# Failures of the servers, not of the rows: never counted against a row (but see
# is_outage: a statement timeout is an OperationalError too, and it is a row's).
INFRASTRUCTURE_ERRORS = (StoreUnavailable, OperationalError, InterfaceError)
QUERY_CANCELED = "57014"  # statement_timeout, or a cancel request


class RowsRefused(Exception):
    """The store refused some documents for reasons of their own."""


class StoreRefused(Exception):
    """The store's write raised an error of no known kind: the row's, or the store's."""


class RetryLater(Exception):
    """A row failed and has attempts left: the segment stops before it for now.

    `passed` is how far the segment got before that row (None: not past any row).
    """

    def __init__(self, cause: Exception, passed: Position | None):
        super().__init__(cause, passed)
        self.passed = passed


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc.__cause__, "sqlstate", None) or getattr(exc, "sqlstate", None)


def is_outage(exc: BaseException) -> bool:
    """True for failures of a server as a whole (never counted against a row)."""
    if isinstance(exc, OperationalError) and _sqlstate(exc) == QUERY_CANCELED:
        # The statement ran too long: the load of these rows, not the connection.
        return False
    return isinstance(exc, INFRASTRUCTURE_ERRORS)
