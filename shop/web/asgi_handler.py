"""Django's ASGI handler, with each request's middleware and view in one thread hop.

Django's own ASGI handler loads the middleware in async mode. Each of Django's built-in
middlewares (sessions, CSRF, auth, messages, ...) is sync code behind an async adapter,
so a request crosses from the event loop to its thread and back for every
process_request and every process_response: about 15 crossings per order placed, a
sixth of a web process's CPU at 50 orders/s (docs/PIPELINE_PROFILE.md).

Here the middleware is loaded in sync mode, as under WSGI, and entered once on the
request's thread. A sync view runs on that same thread. An async view (the consistency
stream) is run on the event loop from there, and the handler sends a streamed answer on
the loop, so a stream holds no thread while it waits. The token waits of projected
reads happen before Django, in readmodels.api.early_waits.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class OneHopASGIHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)
        # thread_sensitive: the request's own thread (Django opens one per request),
        # the one request_started and request_finished run on too, so the request's
        # pooled database connection is handed back at its end.
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)
