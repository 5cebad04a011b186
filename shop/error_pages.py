"""Which body a refusal gets: an HTML page in the admin, the JSON error body elsewhere.

Django calls one handler per status for the whole site (shop.urls names these). The
API and its clients want `{"error": {...}}` (shop.web.errors); a person in the admin
wants an admin page that says what happened and links back, not JSON inside it. Paths
under /api/ that match no route answer JSON here too, also with DEBUG on (where
Django's own 404 is an HTML debug page). A sign-in form refused by the login throttles
(shop.web.login_throttle) answers a page that says when to try again.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpResponsePermanentRedirect
from django.shortcuts import render
from django.urls import Resolver404, resolve
from django.utils.cache import add_never_cache_headers
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.csrf import csrf_exempt

from shop.web import errors
from shop.web.login_throttle import LoginThrottled
from shop.web.middleware import SyncAndAsyncMiddleware


def _in_admin(request) -> bool:
    return request.path_info.startswith("/admin/")


def _admin_page(request, *, status: int, title: str, message: str):
    context = {**admin.site.each_context(request), "title": title, "message": message}
    return render(request, "admin/refused.html", context, status=status)


def forbidden(request, exception=None):
    if _in_admin(request):
        return _admin_page(
            request, status=403, title="Not allowed",
            message=str(exception or "") or (
                "This cannot be done here. A page without a Save button only shows its "
                "object (changes go through the list's actions), and some actions need a "
                "permission your account does not have."
            ),
        )
    return errors.forbidden(request, exception)


def not_found(request, exception=None):
    if _in_admin(request):
        return _admin_page(request, status=404, title="Not found",
                           message="There is nothing at this address.")
    return errors.not_found(request, exception)


def csrf_failure(request, reason: str = ""):
    """CSRF_FAILURE_VIEW: the API's JSON 403 under /api/, Django's page elsewhere."""
    if request.path_info.startswith("/api/"):
        return errors.json_error(
            "csrf_failed", f"CSRF check failed: {reason or 'no valid CSRF token'}.", 403
        )
    return django_csrf_failure(request, reason)


@csrf_exempt  # it changes nothing; a CSRF refusal would be Django's HTML 403 page
def api_not_found(request, rest: str = ""):
    """Any path under /api/ that no route takes: JSON 404, as every API answer is JSON."""
    if settings.APPEND_SLASH and not request.path_info.endswith("/") and request.method in (
        "GET", "HEAD",
    ):
        # What CommonMiddleware would have done had this catch-all not matched.
        try:
            slashed = resolve(request.path_info + "/")
        except Resolver404:
            slashed = None
        if slashed is not None and slashed.func is not api_not_found:
            return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
    return errors.json_error(
        "not_found", "No API resource at this address; GET /api/ lists them.", 404
    )


class LoginThrottledPages(SyncAndAsyncMiddleware):
    """A sign-in form over a login limit: 429 with Retry-After and a page saying so.

    The API's login answers its JSON 429 itself (LoginThrottled is DRF's Throttled);
    this catches the exception where a plain Django view (the storefront's, the admin's,
    the browsable API's sign-in form) let it through.
    """

    def process_exception(self, request, exception):
        if not isinstance(exception, LoginThrottled):
            return None
        message = str(exception.detail)
        if _in_admin(request):
            response = _admin_page(request, status=429, title="Too many sign-in attempts",
                                   message=message)
        else:
            response = render(request, "storefront/login_throttled.html",
                              {"message": message}, status=429)
        response["Retry-After"] = str(exception.wait or 1)
        add_never_cache_headers(response)  # as the sign-in page it stands in for
        return response
