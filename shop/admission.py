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

import asyncio
import json
import logging
import sys
import time
from contextlib import asynccontextmanager

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
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
        self._released: asyncio.Event | None = None

    def release(self) -> None:
        self.in_flight -= 1
        if self._released is not None:
            # Wake the readers waiting for a place; each checks again.
            self._released.set()
            self._released = None

    async def reenter(self, deadline: float) -> bool:
        """Take a read's place for a request that waited, waiting for one until `deadline`."""
        while self.in_flight >= self.max_reads:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._released is None:
                self._released = asyncio.Event()
            released = self._released
            try:
                async with asyncio.timeout(remaining):
                    await released.wait()
            except TimeoutError:
                return False
        self.in_flight += 1
        return True

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT_PATHS):
            return await self.app(scope, receive, send)
        limit = self.max_reads if scope["method"] in READ_METHODS else self.max_requests
        if self.in_flight >= limit:
            record_shed(scope["method"])
            return await refuse(send, self.retry_after)
        ticket = Ticket(self)
        scope[SCOPE_KEY] = ticket
        self.in_flight += 1

        async def send_and_release_when_done(message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                # The answer is complete: its place is free before the client reads the
                # last byte, so a client that sends its next request at once finds it.
                ticket.release()
            await send(message)

        try:
            await self.app(scope, receive, send_and_release_when_done)
        finally:
            ticket.release()



async def refuse(send, retry_after: str | None = None) -> None:
    """Answer 503 overloaded on an ASGI `send`, before anything else was done."""
    body = overloaded_body()
    retry_after = retry_after or str(settings.WEB_RETRY_AFTER_SECONDS)
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", retry_after.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def overloaded_response() -> JsonResponse:
    response = JsonResponse(json.loads(overloaded_body()), status=503)
    response["Retry-After"] = str(settings.WEB_RETRY_AFTER_SECONDS)
    return response


class Overloaded(Exception):
    """A waiting request found no place again within its allowance."""


class Ticket:
    """One admitted request's place; handed back while the request only waits."""

    def __init__(self, admission: Admission):
        self.admission = admission
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.admission.release()

    @asynccontextmanager
    async def parked(self, allowance: float):
        """Give the place back for the duration of a wait, and take a read's place after.

        The place is taken again like a new read's, so that readers whose waits end
        together never push the process past its limits (commands keep their margin);
        a reader that finds none within `allowance` seconds gets Overloaded.
        """
        was_held = self.held
        self.release()
        yield
        if was_held:
            if not await self.admission.reenter(time.monotonic() + allowance):
                record_shed("GET")
                raise Overloaded()
            self.held = True


@asynccontextmanager
async def parked(request, allowance: float):
    """Hand back the request's admission place while it waits (no-op outside ASGI)."""
    ticket = request.scope.get(SCOPE_KEY) if hasattr(request, "scope") else None
    if ticket is None:
        yield
        return
    async with ticket.parked(allowance):
        yield


def leave(request) -> None:
    """Stop counting this request as in flight (a stream that now only waits)."""
    ticket = request.scope.get(SCOPE_KEY) if hasattr(request, "scope") else None
    if ticket is not None:
        ticket.release()


def record_shed(method: str, reason: str = "overloaded") -> None:
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
        record_shed(request.method, "database_busy")
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

    # Async-capable, so that it holds no thread while a projected read waits.
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        return self._checked(request, self.get_response(request))

    async def _acall(self, request):
        return self._checked(request, await self.get_response(request))

    def _checked(self, request, response):
        if response.status_code == 500 and getattr(request, _BUSY_ATTR, False):
            logger.warning("no database connection within the pool timeout: %s", request.path)
            return database_busy_response(request)
        return response

    def process_exception(self, request, exception):
        if is_database_busy(exception):
            logger.warning("no database connection within the pool timeout: %s", request.path)
            return database_busy_response(request)
        return None
