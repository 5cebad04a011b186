"""Request bodies: received whole, within a size, a deadline and a bound, before admission.

`BodyReception` is an ASGI middleware outside `Admission`. Without it a request took its
admission place as soon as its headers arrived, and Django then read the body for as
long as the client cared to send it: a few clients sending a byte a second held every
place. Here a body is read first, and only a complete one goes on to admission and
Django (which then finds it in memory):

- a declared Content-Length above WEB_MAX_BODY_BYTES is a 413 `request_too_large` at
  once, before a byte of the body is read; a body without one (chunked) is read up to
  that size and refused the same way as soon as it passes it;
- the whole body must arrive within WEB_BODY_TIMEOUT_SECONDS of its headers, or the
  answer is 408 `body_timeout` and the connection is closed;
- a request whose body is complete when first read (an ordinary API call: a few
  hundred bytes sent with the headers) takes no place here. One that has to wait for
  more of its body takes one of WEB_MAX_RECEIVING places while it waits; with all of
  them taken it is refused at once, 503 `overloaded` with Retry-After. Slow senders
  are the ones shed, and they never hold a place real work needs.

Bodies are kept in memory only: the size bound is what makes that safe (the settings
keep Django's own spooling to disk above it).
"""

from __future__ import annotations

import asyncio

from django.conf import settings

from shop.web.admission import OVERLOADED
from shop.web.errors import send_json_error
from shop.web.metrics import record_body_refused, record_shed

TOO_LARGE = "request_too_large"
TIMEOUT = "body_timeout"
TIMEOUT_MESSAGE = "The request body did not arrive in time; nothing was done."
RECEIVING_MESSAGE = ("The shop is receiving too many request bodies right now; nothing was "
                     "done. Retry shortly.")


class BodyReception:
    """ASGI middleware: hand requests on with their whole body, or refuse them explicitly."""

    def __init__(self, app, *, max_bytes: int | None = None, timeout: float | None = None,
                 max_receiving: int | None = None):
        self.app = app
        self.max_bytes = max_bytes or settings.WEB_MAX_BODY_BYTES
        self.timeout = timeout or settings.WEB_BODY_TIMEOUT_SECONDS
        self.max_receiving = max_receiving or settings.WEB_MAX_RECEIVING
        self.retry_after = str(settings.WEB_RETRY_AFTER_SECONDS)
        self.receiving = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared, chunked = _framing(scope)
        if declared is None:
            return await send_json_error(send, 400, "bad_request", "The Content-Length is malformed.")
        if declared == 0 and not chunked:
            return await self.app(scope, receive, send)  # no body to wait for
        if declared > self.max_bytes:
            # Before anything is read: no 100 Continue goes out, and the client may stop.
            return await self._refuse_too_large(send)
        try:
            async with asyncio.timeout(self.timeout):
                outcome = await self._receive(receive)
        except TimeoutError:
            record_body_refused(TIMEOUT)
            # Closed: what the client goes on sending is not worth reading.
            return await send_json_error(send, 408, TIMEOUT, TIMEOUT_MESSAGE,
                                         {"Connection": "close"})
        if outcome is _GONE:
            return None
        if outcome is _TOO_LARGE:
            return await self._refuse_too_large(send)
        if outcome is _NO_PLACE:
            record_shed(scope["method"], "receiving")
            return await send_json_error(send, 503, OVERLOADED, RECEIVING_MESSAGE,
                                         {"Retry-After": self.retry_after})
        return await self.app(scope, _replay(outcome, receive), send)

    async def _receive(self, receive):
        """The whole body, or why there is none; a receiving place is held only while waiting."""
        chunks: list[bytes] = []
        size = 0
        placed = False
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return _GONE
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_bytes:
                    return _TOO_LARGE
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
                if not placed:
                    if self.receiving >= self.max_receiving:
                        return _NO_PLACE
                    self.receiving += 1
                    placed = True
        finally:
            if placed:
                self.receiving -= 1

    async def _refuse_too_large(self, send) -> None:
        record_body_refused(TOO_LARGE)
        # The connection stays open: the server reads and drops the rest of the body, so
        # a client that sends it all before reading (most do) still gets this answer.
        await send_json_error(send, 413, TOO_LARGE,
                              f"The request body is larger than {self.max_bytes} bytes.")


_GONE, _TOO_LARGE, _NO_PLACE = object(), object(), object()


def _framing(scope) -> tuple[int | None, bool]:
    """The declared Content-Length (0 if none, None if malformed) and whether it is chunked."""
    declared, chunked = 0, False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                return None, False
            if declared < 0:
                return None, False
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked


def _replay(body: bytes, receive):
    """A `receive` that gives the body received here, then the client's own messages."""
    given = False

    async def replayed():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
