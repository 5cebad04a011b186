"""Consistency for projected reads, in one place: token waits, lag, staleness, fallback.

A projected view names its read model and what to do when that model is down or
lagging past its SLO: answer from PostgreSQL (`strong-fallback`) or 503 with
Retry-After. Every answer says how fresh it is in headers.
"""

from __future__ import annotations

import asyncio
import functools
import io
import time
from dataclasses import dataclass
from importlib import import_module

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, connections
from django.urls import Resolver404, resolve
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from prometheus_client import Counter
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from orders.outbox import InvalidToken, Position, decode_token
from readmodels import config, sessions
from readmodels.pipeline import progress
from readmodels.pipeline.progress import ReadModelState
from readmodels.stores import StoreUnavailable, read_deadline
from shop.web.admission import Overloaded, overloaded_response, place_given_back, send_overloaded
from shop.web.metrics import READS

WAITS_REFUSED = Counter(
    "shop_token_waits_refused_total",
    "Token reads that answered without waiting: MAX_WAITING_READERS readers were waiting.",
    ["read_model"],
)


class ReadModelUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "This view is being brought up to date; retry shortly."
    default_code = "read_model_unavailable"


class InvalidConsistencyToken(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "X-Consistency-Token is not a token this shop issued."
    default_code = "invalid_consistency_token"


class InvalidMaxWait(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "max_wait_ms must be a whole number of milliseconds, 0 or more."
    default_code = "invalid_max_wait"


def projected_parameters() -> list[OpenApiParameter]:
    return [
        OpenApiParameter(
            "X-Consistency-Token",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            description=(
                "A token from a command response: the read waits (up to max_wait_ms) "
                "until this view includes that command's changes. Without it, a signed-in "
                "user's read waits for that user's own latest command (session "
                "consistency; remembered for "
                f"{config.session_token_ttl_seconds()} s). `none` opts out: answer at once."
            ),
        ),
        OpenApiParameter(
            "consistency",
            OpenApiTypes.STR,
            OpenApiParameter.QUERY,
            enum=["none"],
            description="`none`: do not wait for any token, not even the session's.",
        ),
        OpenApiParameter(
            "max_wait_ms",
            OpenApiTypes.INT,
            OpenApiParameter.QUERY,
            description=(
                f"How long to wait for the token, in ms (default "
                f"{config.max_wait_ms_default()}, at most {config.max_wait_ms_cap()})."
            ),
        ),
        OpenApiParameter(
            "X-Consistency",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            response=True,
            enum=["eventual", "strong-fallback"],
            description=(
                "`eventual`: from a projected view; `strong-fallback`: the view was down "
                "or too far behind, so this answer comes from PostgreSQL."
            ),
        ),
        OpenApiParameter(
            "X-Read-Model",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            response=True,
            description="The read model that answered.",
        ),
        OpenApiParameter(
            "X-Read-Model-Lag-Ms",
            OpenApiTypes.INT,
            OpenApiParameter.HEADER,
            response=True,
            description="Age of the oldest change not yet visible in that view; 0 when caught up.",
        ),
        OpenApiParameter(
            "X-Stale",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            response=True,
            enum=["true", "false"],
            description=(
                "true when the governing token (the request's, or for an opt-out or a "
                "session read the user's latest command) was not reached in time."
            ),
        ),
        OpenApiParameter(
            "X-Consistency-Source",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            response=True,
            enum=["request", "session", "none"],
            description=(
                "Which token governed the read: `request` (sent by the client), `session` "
                "(the signed-in user's latest command, remembered by the server) or `none`."
            ),
        ),
        OpenApiParameter(
            "X-Consistency-Wait-Ms",
            OpenApiTypes.INT,
            OpenApiParameter.HEADER,
            response=True,
            description="How long the read waited for its token, in ms (only when one governed).",
        ),
    ]


def eventual_description(read_model: str, store: str, fallback: str) -> str:
    slo = config.slo_seconds(read_model)
    then = (
        "it answers from PostgreSQL with `X-Consistency: strong-fallback`"
        if fallback == "strong"
        else "it answers 503 with Retry-After"
    )
    return (
        f"Consistency: **eventual**, from the `{read_model}` read model ({store}); lag SLO "
        f"{slo:g} s. A signed-in user reads their own latest write by default (session "
        f"consistency); send `X-Consistency-Token` for another token, or `none` to not "
        f"wait. When the view is "
        f"down or behind its SLO, {then}."
    )


def parse_max_wait_ms(raw: str | None, default: int, cap: int) -> int:
    """max_wait_ms from a query string: a whole number of ms, 0 or more, at most `cap`."""
    if raw is None or raw == "":
        return default
    try:
        value = _MAX_WAIT_FIELD.run_validation(raw)
    except serializers.ValidationError:
        raise InvalidMaxWait() from None
    return min(value, cap)


# An integer field, not str.isdigit(): "²" is a digit to isdigit() but no number to int().
_MAX_WAIT_FIELD = serializers.IntegerField(min_value=0, max_value=999_999_999)


class InvalidConsistency(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "consistency may only be `none` (answer at once, without waiting)."
    default_code = "invalid_consistency"


# The value of X-Consistency-Token (or ?consistency=) that asks for no wait at all.
OPT_OUT = "none"

# Which token governed a read (X-Consistency-Source).
SOURCE_REQUEST, SOURCE_SESSION, SOURCE_NONE = "request", "session", "none"


def requested(request) -> tuple[str, Position | None]:
    """What the request asks for: its own token, the session's, or no wait (opt-out).

    Returns (SOURCE_REQUEST, position), (SOURCE_SESSION, None) or (SOURCE_NONE, None).
    """
    choice = request.GET.get("consistency")
    if choice is not None and choice.strip().lower() != OPT_OUT:
        raise InvalidConsistency()
    raw = request.headers.get("X-Consistency-Token") or request.GET.get("consistency_token")
    if choice is not None or (raw and raw.strip().lower() == OPT_OUT):
        return SOURCE_NONE, None
    if not raw:
        return SOURCE_SESSION, None
    try:
        return SOURCE_REQUEST, decode_token(raw)
    except InvalidToken:
        raise InvalidConsistencyToken() from None


def token_of(request) -> Position | None:
    """The token the request sends itself (None: none, or the opt-out)."""
    return requested(request)[1]


@dataclass(frozen=True)
class Prepared:
    """What a projected read learnt before it runs: its token's wait, done already."""

    error: exceptions.APIException | None = None
    token: Position | None = None
    reached: bool | None = None
    state: ReadModelState | None = None  # None: the store did not answer in time
    waited_ms: int | None = None
    # The wait ended and the process was full: answer 503 overloaded, do nothing more.
    overloaded: bool = False
    # Which token governed the read: the request's, the user's session's, or none.
    source: str = "none"


async def _no_user() -> int | None:
    return None


async def prepare(read_model: str, request, identify=_no_user) -> Prepared:
    """The token wait of a projected read (see _prepare), on the right Waiting.

    `identify` is an async callable giving the signed-in user's id (or None); it is
    called only when the request sends no token of its own.
    """
    if hasattr(request, "scope"):
        return await _prepare(read_model, request, progress.waiting(), identify)
    # Not under ASGI: this event loop was made for this request and ends with it, so
    # its Redis connections must not outlive it.
    waiting = progress.Waiting()
    try:
        return await _prepare(read_model, request, waiting, identify)
    finally:
        await waiting.close()


async def _session_token(waiting: progress.Waiting, user_id, deadline: float):
    """The user's remembered token; None when there is none or Redis does not answer."""
    if user_id is None:
        return None
    try:
        async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
            return await sessions.aremembered(waiting.client, user_id)
    except progress.ASYNC_ERRORS:
        # Reading without the session's wait is the same as a client that sent no
        # token: eventual, labelled as such (source none).
        return None


async def _prepare(read_model: str, request, waiting: progress.Waiting, identify) -> Prepared:
    """Validate the token and max_wait_ms and wait for the token: no database, no thread.

    The token is the request's own, else the signed-in user's remembered one (session
    consistency), unless the request opts out. The wait is on Redis pub/sub
    (progress.Waiting) and ends by max_wait_ms; every Redis call in it by that deadline
    plus the read allowance. While it waits the request hands back its admission place.
    Beyond MAX_WAITING_READERS waiting readers, a read does not wait: it answers at
    once, stale if its token is not reached.
    """
    try:
        source, token = requested(request)
        max_wait_ms = parse_max_wait_ms(
            request.GET.get("max_wait_ms"), config.max_wait_ms_default(), config.max_wait_ms_cap()
        )
    except exceptions.APIException as exc:
        return Prepared(error=exc)
    allowance = config.read_timeout()
    remembered = None
    if source != SOURCE_REQUEST:
        # Who the user is comes first and off the clock: a slow look-up must not eat
        # the allowance of the store calls below (they would time out: a 503).
        user_id = await identify()
        remembered = await _session_token(waiting, user_id, time.monotonic() + allowance)
    started = time.monotonic()
    if source == SOURCE_SESSION:
        token = remembered
        source = SOURCE_SESSION if token is not None else SOURCE_NONE
    try:
        if token is None:
            current = await waiting.state(read_model, started + allowance)
            # Opted out: no wait, but the answer still says whether it shows the
            # user's latest write.
            reached = None if remembered is None else current.covers(remembered)
            return Prepared(state=current, reached=reached, source=source)
        if waiting.full():
            WAITS_REFUSED.labels(read_model).inc()
            current = await waiting.state(read_model, started + allowance)
            reached = current.covers(token)
        else:
            async with place_given_back(request, allowance):
                reached, current = await waiting.wait_for(
                    read_model, token, started + max_wait_ms / 1000
                )
    except StoreUnavailable:
        return Prepared(token=token, source=source)
    except Overloaded:
        return Prepared(token=token, overloaded=True, source=source)
    waited_ms = int((time.monotonic() - started) * 1000)
    return Prepared(
        token=token, reached=reached, state=current, waited_ms=waited_ms, source=source
    )


PREPARED_KEY = "shop.projected_read"


class EarlyTokenWaits:
    """ASGI middleware: a projected read's token wait, before Django takes the request.

    Django runs each request's synchronous parts (most middleware, the DRF view) on a
    thread made for that request, which then lives as long as the request. Waiting here,
    before Django, means a waiting reader has no thread at all yet. Every GET that
    resolves to a projected read is prepared here; the outcome travels to the view in
    the ASGI scope.

    A read that sends no token of its own waits for its user's remembered one (session
    consistency), so the user is identified here, with the API's own authenticators, in
    a short step on a worker thread that hands its database connection back before the
    wait begins: a waiting reader still holds no connection. Who the user is only
    chooses the token to wait for; the view authenticates and authorizes as always.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET":
            read_model = _projected_read_model(scope)
            if read_model is not None:
                request = ASGIRequest(scope, io.BytesIO())
                prepared = scope[PREPARED_KEY] = await prepare(
                    read_model, request, functools.partial(_identify, request)
                )
                if prepared.overloaded:
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


def _projected_read_model(scope) -> str | None:
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    try:
        match = resolve(path)
    except Resolver404:
        return None
    return getattr(match.func, "projected_read_model", None)


async def _known(user_id: int | None) -> int | None:
    return user_id


def projected(view_class):
    """The URL's view for a ProjectedReadView: the DRF view, given the wait's outcome.

    Under shop.asgi the token wait already happened in EarlyTokenWaits, holding no
    thread and no database connection; the DRF view (authentication, permissions, the
    read) then runs in the request's thread with the outcome on the request, so it
    never waits again.
    """
    drf_view = view_class.as_view()

    def view(request, *args, **kwargs):
        prepared = getattr(request, "scope", {}).get(PREPARED_KEY)
        if prepared is not None:
            if prepared.overloaded:
                return overloaded_response()
            request.projected_read = prepared
        # Else not under shop.asgi (Django's test client, a WSGI server): the view waits
        # in its own thread, once it knows the user.
        return drf_view(request, *args, **kwargs)

    # What Django, DRF and drf-spectacular look for on a DRF view function.
    view.cls = drf_view.cls
    view.initkwargs = drf_view.initkwargs
    view.csrf_exempt = True
    view.projected_read_model = view_class.read_model
    view.__name__ = drf_view.__name__
    view.__doc__ = drf_view.__doc__
    return view


class ProjectedReadView(APIView):
    """Subclasses set read_model, slo_model, fallback and implement read (and read_strong).

    Route them through projected(): the wait happens there, before this view runs.
    """

    read_model: str
    slo_model: str | None = None
    fallback: str = "unavailable"  # or "strong"

    def read(self, request, **kwargs):
        raise NotImplementedError

    def read_strong(self, request, **kwargs):
        raise NotImplementedError

    def get(self, request, **kwargs):
        self.consistency_headers = {}
        prepared = getattr(request._request, "projected_read", None)
        if prepared is None:
            # Routed without projected() (a test or a subclass mounted by hand): the
            # same wait, run from this thread.
            prepared = async_to_sync(prepare)(
                self.read_model,
                request._request,
                functools.partial(_known, request.user.pk if request.user.is_authenticated else None),
            )
            if prepared.overloaded:
                return overloaded_response()
        if prepared.error is not None:
            raise prepared.error
        self.source = prepared.source
        state = prepared.state
        if state is None:
            return self._degrade(request, None, **kwargs)
        slo_ms = config.slo_seconds(self.slo_model or self.read_model) * 1000
        if not state.reported or state.lag_ms > slo_ms:
            return self._degrade(request, state, **kwargs)
        self.consistency_headers = {
            "X-Consistency": "eventual",
            "X-Read-Model": self.read_model,
            "X-Read-Model-Lag-Ms": str(state.lag_ms),
            "X-Stale": "true" if prepared.reached is False else "false",
            "X-Consistency-Source": prepared.source,
        }
        if prepared.token is not None:
            self.consistency_headers["X-Consistency-Wait-Ms"] = str(prepared.waited_ms)
        # The read itself gets a fixed allowance: every store call in it ends by then.
        deadline = read_deadline.set(time.monotonic() + config.read_timeout())
        try:
            return self.read(request, **kwargs)
        except StoreUnavailable:
            pass
        finally:
            read_deadline.reset(deadline)
        return self._degrade(request, None, **kwargs)

    def _degrade(self, request, state, **kwargs):
        lag = "" if state is None else str(state.lag_ms)
        if self.fallback == "strong":
            self.consistency_headers = {
                "X-Consistency": "strong-fallback",
                "X-Read-Model": self.read_model,
                "X-Stale": "false",
            }
            if lag:
                self.consistency_headers["X-Read-Model-Lag-Ms"] = lag
            return self.read_strong(request, **kwargs)
        self.consistency_headers = {"X-Read-Model": self.read_model, "Retry-After": "1"}
        if lag:
            self.consistency_headers["X-Read-Model-Lag-Ms"] = lag
        raise ReadModelUnavailable()

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        headers = getattr(self, "consistency_headers", {})
        if hasattr(self, "source"):
            headers.setdefault("X-Consistency-Source", self.source)
        for name, value in headers.items():
            response[name] = value
        if response.status_code < 500 or response.status_code == 503:
            consistency = headers.get("X-Consistency", "unavailable")
            if headers.get("X-Stale") == "true":
                consistency = "stale"
            READS.labels(self.read_model, consistency).inc()
        return response
