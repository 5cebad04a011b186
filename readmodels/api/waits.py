"""The token wait of a projected read: no database connection, no thread, a bounded time.

The wait is on Redis pub/sub (readmodels.pipeline.progress.Waiting) and ends by
max_wait_ms; every Redis call in it by that deadline plus the read allowance. While it
waits the request gives back its admission place. Beyond MAX_WAITING_READERS waiting
readers, a read does not wait: it answers at once, stale if its token is not reached.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from prometheus_client import Counter
from rest_framework import exceptions

from orders.outbox import Position, TokenContent
from readmodels import config, sessions
from readmodels.api.tokens import (
    SOURCE_NONE,
    SOURCE_REQUEST,
    SOURCE_SESSION,
    parse_max_wait_ms,
    token_requested,
)
from readmodels.pipeline import progress
from readmodels.pipeline.progress import ReadModelState
from readmodels.stores import StoreUnavailable
from shop.web.admission import Overloaded, place_given_back

WAITS_REFUSED = Counter(
    "shop_token_waits_refused_total",
    "Token reads that answered without waiting: MAX_WAITING_READERS readers were waiting.",
    ["read_model"],
)


@dataclass(frozen=True)
class TokenWait:
    """How a projected read's token wait went, before the read itself runs."""

    error: exceptions.APIException | None = None
    token: Position | None = None
    reached: bool | None = None
    state: ReadModelState | None = None  # None: the store did not answer in time
    waited_ms: int | None = None
    # The wait ended and the process was full: answer 503 overloaded, do nothing more.
    overloaded: bool = False
    # Which token governed the read: the request's, the user's session's, or none.
    source: str = SOURCE_NONE


async def anonymous() -> int | None:
    return None


def known_user(user_id: int | None):
    """An `identify` for a caller that already knows who the user is."""

    async def identify() -> int | None:
        return user_id

    return identify


def past_slo(state: ReadModelState, slo_model: str) -> bool:
    """The view cannot answer within its SLO: it has not reported, or lags past it."""
    return not state.reported or lags_past_slo(state, slo_model)


def lags_past_slo(state: ReadModelState, slo_model: str) -> bool:
    """The view reported, and is further behind than its SLO: a wait for it would most
    likely be spent whole (a transaction holds the outbox horizon, its store fails, a
    backlog). One that has not reported yet (its projector's first run) is waited for."""
    return state.reported and state.lag_ms > config.slo_seconds(slo_model) * 1000


async def wait_for_token(read_model: str, request, identify=anonymous, *,
                         slo_model: str | None = None) -> TokenWait:
    """The token wait of a projected read (see _wait), on the right Waiting.

    `identify` is an async callable giving the signed-in user's id (or None); it is
    called only when the request sends no token of its own. `slo_model` names the lag
    SLO the read is held to (its read model's by default).
    """
    slo_model = slo_model or read_model
    if hasattr(request, "scope"):
        return await _wait(read_model, slo_model, request, progress.waiting(), identify)
    # Not under ASGI: this event loop was made for this request and ends with it, so
    # its Redis connections must not outlive it.
    waiting = progress.Waiting()
    try:
        return await _wait(read_model, slo_model, request, waiting, identify)
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


async def _wait(read_model: str, slo_model: str, request, waiting: progress.Waiting,
                identify) -> TokenWait:
    """Validate the token and max_wait_ms and wait for the token.

    The token is the request's own, else the signed-in user's remembered one (session
    consistency), unless the request opts out. A view already past its SLO is not
    waited for: the read falls back (or answers 503) at once, as it would after the
    wait, instead of spending the whole wait on a view that cannot get there.
    """
    try:
        source, token = token_requested(request)
        max_wait_ms = parse_max_wait_ms(
            request.GET.get("max_wait_ms"), config.max_wait_ms_default(), config.max_wait_ms_cap()
        )
    except exceptions.APIException as exc:
        return TokenWait(error=exc)
    allowance = config.read_timeout()
    remembered = None
    if source != SOURCE_REQUEST:
        # Who the user is comes first and off the clock: a slow look-up must not eat
        # the allowance of the store calls below (they would time out: a 503).
        user_id = await identify()
        remembered = await _session_token(waiting, user_id, time.monotonic() + allowance)
    started = time.monotonic()
    content = token
    if source == SOURCE_SESSION:
        content = remembered
        source = SOURCE_SESSION if content is not None else SOURCE_NONE
    token = None if content is None else content.position
    try:
        if token is None:
            current = await waiting.state(read_model, started + allowance)
            # Opted out: no wait, but the answer still says whether it shows the
            # user's latest write.
            reached = None if remembered is None else _reaches(current, remembered)
            return TokenWait(state=current, reached=reached, source=source)
        if waiting.full():
            WAITS_REFUSED.labels(read_model).inc()
            current = await waiting.state(read_model, started + allowance)
            reached = _reaches(current, content)
        else:
            async with place_given_back(request, allowance):
                reached, current = await waiting.wait_for(
                    read_model, token, started + max_wait_ms / 1000,
                    hopeless=lambda state: lags_past_slo(state, slo_model)
                    or _of_another_cluster(state, content),
                )
            reached = reached and _reaches(current, content)
    except StoreUnavailable:
        return TokenWait(token=token, source=source)
    except Overloaded:
        return TokenWait(token=token, overloaded=True, source=source)
    waited_ms = int((time.monotonic() - started) * 1000)
    return TokenWait(
        token=token, reached=reached, state=current, waited_ms=waited_ms, source=source
    )


def _of_another_cluster(state: ReadModelState, content: TokenContent) -> bool:
    """A token of another PostgreSQL cluster (issued before the database was restored
    into a new one): its position says nothing of this cluster's, so it is never waited
    for, and never taken as reached."""
    return bool(content.cluster and state.cluster and content.cluster != state.cluster)


def _reaches(state: ReadModelState, content: TokenContent) -> bool:
    return not _of_another_cluster(state, content) and state.covers(content.position)
