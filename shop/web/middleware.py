"""A Django middleware that runs in sync and in async mode alike.

Under ASGI a sync-only middleware would hold a thread for the whole request, also while
a projected read waits for its token; one that is only async would cost a thread hop
under shop.web.asgi_handler, which loads the middleware in sync mode. Subclasses say
what happens around the rest of the chain (`around`) and to its response (`answer`).
"""

from __future__ import annotations

from contextlib import nullcontext

from asgiref.sync import iscoroutinefunction, markcoroutinefunction


class SyncAndAsyncMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        with self.around(request):
            response = self.get_response(request)
        return self.answer(request, response)

    async def _acall(self, request):
        with self.around(request):
            response = await self.get_response(request)
        return self.answer(request, response)

    def around(self, request):
        """A context manager entered while the rest of the chain runs."""
        return nullcontext()

    def answer(self, request, response):
        """The response to give, from the chain's."""
        return response
