"""The outermost ASGI layer: whatever the middlewares before Django raise is JSON.

Django turns a view's exception into its error page, but the ASGI middlewares in front
of it (admission, the early token wait) run outside Django's handler: an exception
there would reach the server, which answers a bare text 500. Here a malformed request
that Django's parsing refuses (too many fields, a bad Host) gets its 4xx, and anything
else the shop's 500 body, both as the one JSON error body. Once a response has started
there is nothing left to say: the exception goes on to the server, which closes the
connection.
"""

from __future__ import annotations

import logging

from django.core.exceptions import BadRequest, SuspiciousOperation

from shop.web.errors import refusal_of, send_json_error

logger = logging.getLogger(__name__)


class JsonSafetyNet:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_and_note_start(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_start)
        except (SuspiciousOperation, BadRequest) as exc:
            if started:
                raise
            status, code, message = refusal_of(exc)
            await send_json_error(send, status, code, message)
        except Exception:
            if started:
                raise
            logger.exception("request failed before Django answered it: %s %s",
                             scope.get("method"), scope.get("path"))
            await send_json_error(send, 500, "server_error", "Something went wrong on our side.")
