"""Request ids: every request gets one (the caller's X-Request-ID if sane), for logs and outbox rows.

`current_request_id` is set per request (or Celery task) so that the log lines and the
outbox rows it causes carry the id of what caused them.
"""

from __future__ import annotations

import contextvars
import re
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_request_id", default=""
)

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestIdMiddleware:
    """Give every request an id, and answer it in X-Request-ID."""

    # Async-capable: a sync-only middleware would hold a thread for the whole request
    # under ASGI, also while a projected read waits for its token.
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        request_id = _request_id(request)
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response

    async def _acall(self, request):
        request_id = _request_id(request)
        token = current_request_id.set(request_id)
        try:
            response = await self.get_response(request)
        finally:
            current_request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


def _request_id(request) -> str:
    incoming = request.headers.get("X-Request-ID", "")
    return incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
