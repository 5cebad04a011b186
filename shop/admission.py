"""Load shedding and "database busy" answers for the web processes.

Each web process admits a bounded number of requests in flight (`Admission`, an ASGI
middleware around the whole app). Above capacity it answers 503 `overloaded` with
Retry-After at once, instead of queueing requests into client timeouts. Commands
degrade last: reads are refused above WEB_MAX_READS, commands only above
WEB_MAX_REQUESTS. A request that waits for a consistency token hands its place back
while it waits (it holds no thread and no database connection then); waiting readers
have their own bound, READMODELS["MAX_WAITING_READERS"].

`DatabaseBusyMiddleware` turns "no database connection within the pool timeout"
(psycopg_pool.PoolTimeout, which Django raises as OperationalError) into 503
`database_busy` with Retry-After wherever it happens: in a view, or in a middleware
such as the session's, where Django would otherwise answer a plain 500.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager

from django.conf import settings
from django.core.signals import got_request_exception
from django.http import JsonResponse
from prometheus_client import Counter

logger = logging.getLogger(__name__)

SHED = Counter(
    "shop_requests_shed_total",
    "Requests refused with 503 before any work, by kind (read, command) and reason "
    "(overloaded: over the admission limit; database_busy: no pooled connection in time).",
    ["kind", "reason"],
)

SCOPE_KEY = "shop.admission"
# Always admitted: health checks must tell "overloaded" from "down", and scrapes show
# the overload.
EXEMPT_PATHS = ("/api/health", "/metrics")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def overloaded_body() -> bytes:
    return json.dumps(
        {
            "error": {
                "code": "overloaded",
                "message": "The shop is busy right now; nothing was done. Retry shortly.",
            }
        }
    ).encode()


class Admission:
    """ASGI middleware: bound the HTTP requests this process serves at once."""

    def __init__(self, app, *, max_requests: int | None = None, max_reads: int | None = None):
        self.app = app
        self.max_requests = max_requests or settings.WEB_MAX_REQUESTS
        self.max_reads = min(max_reads or settings.WEB_MAX_READS, self.max_requests)
        self.retry_after = str(settings.WEB_RETRY_AFTER_SECONDS)
        self.in_flight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT_PATHS):
            return await self.app(scope, receive, send)
        limit = self.max_reads if scope["method"] in READ_METHODS else self.max_requests
        if self.in_flight >= limit:
            _record_shed(scope["method"])
            return await self._refuse(send)
        ticket = Ticket(self)
        scope[SCOPE_KEY] = ticket
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            ticket.release()

    async def _refuse(self, send):
        body = overloaded_body()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", self.retry_after.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class Ticket:
    """One admitted request's place; handed back while the request only waits."""

    def __init__(self, admission: Admission):
        self.admission = admission
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.admission.in_flight -= 1

    @contextmanager
    def parked(self):
        """Give the place back for the duration of a wait, and take it again after.

        Taking it again is never refused: the request was admitted and has waited. The
        count may then pass the limit for a moment, and new arrivals are refused.
        """
        was_held = self.held
        self.release()
        try:
            yield
        finally:
            if was_held and not self.held:
                self.held = True
                self.admission.in_flight += 1


@contextmanager
def parked(request):
    """Hand back the request's admission place while it waits (no-op outside ASGI)."""
    ticket = getattr(request, "scope", {}).get(SCOPE_KEY) if hasattr(request, "scope") else None
    if ticket is None:
        yield
        return
    with ticket.parked():
        yield


def _record_shed(method: str, reason: str = "overloaded") -> None:
    SHED.labels("read" if method in READ_METHODS else "command", reason).inc()


# --- database busy -------------------------------------------------------------------

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
        _record_shed(request.method, "database_busy")
    response = JsonResponse(
        {
            "error": {
                "code": "database_busy",
                "message": "Every database connection is busy; nothing was changed. Retry shortly.",
            }
        },
        status=503,
    )
    response["Retry-After"] = str(settings.WEB_RETRY_AFTER_SECONDS)
    return response


_BUSY_ATTR = "_shop_database_busy"


def _note_database_busy(sender, request=None, **kwargs):
    # Django turns an exception in a view or middleware into a 500 response right where
    # it happened; this signal is sent while the exception is being handled, so note it
    # on the request for DatabaseBusyMiddleware to replace that 500.
    if request is not None and is_database_busy(sys.exc_info()[1]):
        setattr(request, _BUSY_ATTR, True)


got_request_exception.connect(_note_database_busy, dispatch_uid="shop.admission.database_busy")


class DatabaseBusyMiddleware:
    """Outermost Django middleware: a 500 caused by a pool timeout becomes 503 database_busy."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code == 500 and getattr(request, _BUSY_ATTR, False):
            logger.warning("no database connection within the pool timeout: %s", request.path)
            return database_busy_response(request)
        return response

    def process_exception(self, request, exception):
        if is_database_busy(exception):
            logger.warning("no database connection within the pool timeout: %s", request.path)
            return database_busy_response(request)
        return None
