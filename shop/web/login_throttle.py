"""Every password presented is counted before it is checked, whichever door it comes through.

The API's login, the storefront's and the admin's sign-in forms and the browsable API's
all check a password with django.contrib.auth.authenticate(), which asks the
AUTHENTICATION_BACKENDS. The shop's one backend, `ThrottledModelBackend`, counts the
attempt on the per-address and per-account counters (shop.web.throttles.login_wait,
the same Redis counters for every door) and, over a limit, raises `LoginThrottled`
before it looks at the password, so the right password is refused too.

One door checks a password without authenticate(): Django's own password change form,
which asks for the current password and checks it on the user. The admin's password
change is served by `AdminPasswordChangeView` instead (shop.urls), whose form checks the
current password through authenticate(), so it is counted too.

`LoginThrottled` is DRF's Throttled: an API view answers it as every 429, JSON
`throttled` with Retry-After. It is not PermissionDenied, which authenticate() would
swallow into "wrong password"; a plain Django view (a sign-in form) lets it through to
shop.error_pages.LoginThrottledPages, which answers a readable 429 page.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib import admin
from django.contrib.admin.forms import AdminPasswordChangeForm
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.views import PasswordChangeView
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.views.decorators.debug import sensitive_variables
from rest_framework import exceptions

from shop.web.sessions import user_by_id
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

    def get_user(self, user_id):
        # Every request of a signed-in browser asks this (auth.get_user): one fixed
        # statement instead of the ORM's query built anew (shop.web.sessions).
        try:
            user = user_by_id(get_user_model()._meta.pk.to_python(user_id))
        except ValidationError:
            return None
        return user if user is not None and self.user_can_authenticate(user) else None

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


class CountedPasswordChangeForm(AdminPasswordChangeForm):
    """The admin's password change form, checking the current password as a sign-in."""

    def __init__(self, user, *args, request=None, **kwargs):
        super().__init__(user, *args, **kwargs)
        self.request = request

    @sensitive_variables("old_password")
    def clean_old_password(self):
        old_password = self.cleaned_data["old_password"]
        checked = authenticate(self.request, username=self.user.get_username(),
                               password=old_password)
        if checked is None or checked.pk != self.user.pk:
            raise ValidationError(self.error_messages["password_incorrect"],
                                  code="password_incorrect")
        return old_password


class AdminPasswordChangeView(PasswordChangeView):
    """What admin.site.password_change serves, with the counted form."""

    form_class = CountedPasswordChangeForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}

    def get_success_url(self):
        return reverse("admin:password_change_done", current_app=admin.site.name)

    def get_context_data(self, **kwargs):
        return {**admin.site.each_context(self.request), **super().get_context_data(**kwargs)}


admin_password_change = admin.site.admin_view(AdminPasswordChangeView.as_view())
