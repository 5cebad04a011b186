"""Every password presented is counted before it is checked, whichever door it comes through.

The API's login, the storefront's and the admin's sign-in forms and the browsable API's
all check a password with django.contrib.auth.authenticate(), which asks the
AUTHENTICATION_BACKENDS. The shop's one backend, `ThrottledModelBackend`, counts the
attempt on the per-address and per-account counters (shop.web.throttles.login_wait,
the same Redis counters for every door) and, over a limit, raises `LoginThrottled`
before it looks at the password, so the right password is refused too.

`LoginThrottled` is DRF's Throttled: an API view answers it as every 429, JSON
`throttled` with Retry-After. It is not PermissionDenied, which authenticate() would
swallow into "wrong password"; a plain Django view (a sign-in form) lets it through to
shop.error_pages.LoginThrottledPages, which answers a readable 429 page.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from rest_framework import exceptions

from shop.web.throttles import login_wait


class LoginThrottled(exceptions.Throttled):
    default_detail = "Too many sign-in attempts."
    extra_detail_singular = "Try again in {wait} second."
    extra_detail_plural = "Try again in {wait} seconds."


class ThrottledModelBackend(ModelBackend):
    """Django's ModelBackend, counting each password presented before it checks it."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        self._count(request, username, password, kwargs)
        return super().authenticate(request, username, password, **kwargs)

    async def aauthenticate(self, request, username=None, password=None, **kwargs):
        await sync_to_async(self._count)(request, username, password, kwargs)
        return await super().aauthenticate(request, username, password, **kwargs)

    @staticmethod
    def _count(request, username, password, credentials) -> None:
        if password is None:
            return  # not a password sign-in
        if username is None:
            username = credentials.get(get_user_model().USERNAME_FIELD)
        wait = login_wait(request, username)
        if wait is not None:
            raise LoginThrottled(wait=wait)
