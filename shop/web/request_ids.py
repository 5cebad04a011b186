"""Request ids: every request gets one (the caller's X-Request-ID if sane), for logs and outbox rows.

`current_request_id` is set per request (or Celery task) so that the log lines and the
outbox rows it causes carry the id of what caused them.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from contextlib import contextmanager

from shop.web.middleware import SyncAndAsyncMiddleware

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_request_id", default=""
)

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestIdMiddleware(SyncAndAsyncMiddleware):
    """Give every request an id, and answer it in X-Request-ID."""

    @contextmanager
    def around(self, request):
        request.request_id = _request_id(request)
        token = current_request_id.set(request.request_id)
        try:
            yield
        finally:
            current_request_id.reset(token)

    def answer(self, request, response):
        response["X-Request-ID"] = request.request_id
        return response


def _request_id(request) -> str:
    incoming = request.headers.get("X-Request-ID", "")
    return incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
