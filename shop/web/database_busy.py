"""Database busy: no pooled connection in time becomes 503 `database_busy`, wherever it happens.

A web process's connection pool hands out a bounded number of connections; a request
that finds none within the pool's timeout gets psycopg_pool.PoolTimeout, which Django
raises as OperationalError. In a DRF view the exception handler answers it; anywhere
else (a middleware such as the session's) Django would answer a plain 500, which
`DatabaseBusyMiddleware`, the outermost Django middleware, replaces.
"""

from __future__ import annotations

import logging
import sys

from django.conf import settings
from django.core.signals import got_request_exception
from django.http import JsonResponse

from shop.web.errors import json_error
from shop.web.metrics import record_shed
from shop.web.middleware import SyncAndAsyncMiddleware

logger = logging.getLogger(__name__)

CODE = "database_busy"
MESSAGE = "Every database connection is busy; nothing was changed. Retry shortly."


def is_database_busy(exc: BaseException | None) -> bool:
    """True for "no pooled connection within the pool's timeout", however it is wrapped."""
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:  # pragma: no cover - psycopg[pool] is a dependency
        return False
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, PoolTimeout):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def database_busy_response(request=None) -> JsonResponse:
    if request is not None:
        record_shed(request.method, CODE)
    return json_error(CODE, MESSAGE, 503,
                      headers={"Retry-After": str(settings.WEB_RETRY_AFTER_SECONDS)})


_BUSY_ATTR = "_shop_database_busy"


def _note_database_busy(sender, request=None, **kwargs):
    # Django turns an exception in a view or middleware into a 500 response right where
    # it happened; this signal is sent while the exception is being handled, so note it
    # on the request for DatabaseBusyMiddleware to replace that 500.
    if request is not None and is_database_busy(sys.exc_info()[1]):
        setattr(request, _BUSY_ATTR, True)


got_request_exception.connect(_note_database_busy, dispatch_uid="shop.web.database_busy")


class DatabaseBusyMiddleware(SyncAndAsyncMiddleware):
    """Outermost Django middleware: a 500 caused by a pool timeout becomes 503 database_busy."""

    def answer(self, request, response):
        if response.status_code == 500 and getattr(request, _BUSY_ATTR, False):
            logger.warning("no database connection within the pool timeout: %s", request.path)
            return database_busy_response(request)
        return response

    def process_exception(self, request, exception):
        if is_database_busy(exception):
            logger.warning("no database connection within the pool timeout: %s", request.path)
            return database_busy_response(request)
        return None
