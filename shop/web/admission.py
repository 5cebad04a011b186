"""Load shedding: each web process admits a bounded number of requests in flight.

`Admission` is an ASGI middleware around the whole app. Above capacity it answers 503
`overloaded` with Retry-After at once, instead of queueing requests into client
timeouts. Commands degrade last: reads are refused above WEB_MAX_READS, commands only
above WEB_MAX_REQUESTS. A request that waits for a consistency token gives its place
back while it waits (it holds no thread and no database connection then) and takes a
read's place again after; waiting readers have their own bound,
READMODELS["MAX_WAITING_READERS"].
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

from django.conf import settings
from django.http import JsonResponse

from shop.web.errors import json_error, send_json_error
from shop.web.metrics import READ_METHODS, record_shed

SCOPE_KEY = "shop.web.admission"
# Always admitted: health checks must tell "overloaded" from "down", and scrapes show
# the overload.
EXEMPT_PATHS = ("/api/health", "/metrics")
OVERLOADED = "overloaded"
OVERLOADED_MESSAGE = "The shop is busy right now; nothing was done. Retry shortly."


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
            return await send_overloaded(send, self.retry_after)
        place = Place(self)
        scope[SCOPE_KEY] = place
        self.in_flight += 1

        async def send_and_release_when_done(message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                # The answer is complete: its place is free before the client reads the
                # last byte, so a client that sends its next request at once finds it.
                place.release()
            await send(message)

        try:
            await self.app(scope, receive, send_and_release_when_done)
        finally:
            place.release()


async def send_overloaded(send, retry_after: str | None = None) -> None:
    """Answer 503 overloaded on an ASGI `send`, before anything else was done."""
    await send_json_error(
        send, 503, OVERLOADED, OVERLOADED_MESSAGE,
        {"Retry-After": retry_after or str(settings.WEB_RETRY_AFTER_SECONDS)},
    )


def overloaded_response() -> JsonResponse:
    return json_error(OVERLOADED, OVERLOADED_MESSAGE, 503,
                      headers={"Retry-After": str(settings.WEB_RETRY_AFTER_SECONDS)})


class Overloaded(Exception):
    """A waiting request found no place again within its allowance."""


class Place:
    """One admitted request's place; given back while the request only waits."""

    def __init__(self, admission: Admission):
        self.admission = admission
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.admission.release()

    @asynccontextmanager
    async def given_back(self, allowance: float):
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


def _place_of(request) -> Place | None:
    return request.scope.get(SCOPE_KEY) if hasattr(request, "scope") else None


@asynccontextmanager
async def place_given_back(request, allowance: float):
    """Give back the request's admission place while it waits (no-op outside ASGI)."""
    place = _place_of(request)
    if place is None:
        yield
        return
    async with place.given_back(allowance):
        yield


def stop_counting(request) -> None:
    """Stop counting this request as in flight (a stream that from now on only waits)."""
    place = _place_of(request)
    if place is not None:
        place.release()
