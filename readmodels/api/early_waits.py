"""ASGI middleware: a projected read's token wait, before Django takes the request.

Django runs each request's synchronous parts (most middleware, the DRF view) on a
thread made for that request, which then lives as long as the request. Waiting here,
before Django, means a waiting reader has no thread at all yet. Every GET that
resolves to a projected read waits here; the outcome travels to the view in the ASGI
scope (readmodels.api.base.projected picks it up).

A read that sends no token of its own waits for its user's remembered one (session
consistency), so the user is identified here, with the API's own authenticators, in
a short step on a worker thread that hands its database connection back before the
wait begins: a waiting reader still holds no connection. Who the user is only
chooses the token to wait for; the view authenticates and authorizes as always.
"""

from __future__ import annotations

import functools
import io
from importlib import import_module

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, connections
from django.urls import Resolver404, resolve
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.settings import api_settings

from readmodels.api.waits import wait_for_token
from shop.web.admission import send_overloaded

# Where the outcome of the wait travels to the view, in the ASGI scope.
SCOPE_KEY = "shop.projected_read"


class EarlyTokenWaits:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        # HEAD is a GET without the body: it waits here too, never in the view (where it
        # would hold a thread and a pooled connection for its whole wait).
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            view = _projected_read_view(scope)
            if view is not None:
                request = ASGIRequest(scope, io.BytesIO())
                waited = scope[SCOPE_KEY] = await wait_for_token(
                    view.projected_read_model, request, functools.partial(_identify, request),
                    slo_model=view.projected_slo_model,
                )
                if waited.overloaded:
                    return await send_overloaded(send)
        return await self.app(scope, receive, send)


async def _identify(request) -> int | None:
    if "authorization" not in request.headers and settings.SESSION_COOKIE_NAME not in request.COOKIES:
        return None  # anonymous: nothing to look up
    return await sync_to_async(_user_id_of, thread_sensitive=False)(request)


def _user_id_of(request) -> int | None:
    """The id of the user the request's credentials name, or None; never raises."""
    try:
        drf_request = Request(
            request,
            authenticators=[
                auth() for auth in api_settings.DEFAULT_AUTHENTICATION_CLASSES
                if not issubclass(auth, SessionAuthentication)
            ],
        )
        user = drf_request.user
        if not user.is_authenticated and settings.SESSION_COOKIE_NAME in request.COOKIES:
            engine = import_module(settings.SESSION_ENGINE)
            request.session = engine.SessionStore(request.COOKIES[settings.SESSION_COOKIE_NAME])
            user = get_user(request)
        return user.pk if user.is_authenticated else None
    except (exceptions.APIException, DatabaseError):
        # Bad credentials (the view answers 401) or no connection in time (the view
        # answers database_busy): either way there is no session to wait for.
        return None
    finally:
        # Back to the pool before the wait starts.
        connections.close_all()


def _projected_read_view(scope):
    """The URL's view function if it is a projected read (readmodels.api.base.projected)."""
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    try:
        match = resolve(path)
    except Resolver404:
        return None
    return match.func if hasattr(match.func, "projected_read_model") else None
