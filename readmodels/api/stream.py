"""GET /api/consistency/stream: Server-Sent Events telling when views pass a token.

The client names a consistency token and the views it cares about; the stream sends
one `caught_up` event per view as soon as that view includes the token, then `end`
and closes (or `timeout` at the deadline). Waiting is on the projectors' Redis pub/sub
announcements, on the web process's one shared subscription
(progress.Waiting); no request polls PostgreSQL. Served by the ASGI app. It reveals only
whether views have passed a token, never any data, so it needs no login; opening
streams is throttled per client address, and a client may hold only so many at once
(STREAMS_PER_CLIENT, counted in Redis).
"""

from __future__ import annotations

import asyncio
import json
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from orders.outbox import InvalidToken, read_token
from readmodels import projectors
from readmodels.api.tokens import InvalidMaxWait, parse_max_wait_ms
from readmodels.pipeline import progress
from readmodels.stores import StoreUnavailable
from shop.web import throttles
from shop.web.admission import stop_counting
from shop.web.errors import json_error

DEFAULT_WAIT_MS = 10_000
MAX_WAIT_MS = 60_000


def _error(code: str, message: str, status: int = 400) -> JsonResponse:
    return json_error(code, message, status)


def _too_many(code: str, message: str, retry_after: int) -> JsonResponse:
    return json_error(code, message, 429, headers={"Retry-After": str(retry_after)})


def _slots_key(request) -> str:
    prefix = settings.THROTTLE_KEY_PREFIX
    return f"{prefix}:streams:{throttles.client_address(request)}"


# Count a stream in; refuse past the limit without touching the expiry (refused attempts
# must not keep a leaked count alive); only ever lengthen the expiry, never shorten it.
_TAKE_SLOT = """
local n = redis.call('INCR', KEYS[1])
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return n
"""


async def _take_slot(client, key: str, wait_ms: int) -> bool:
    """Count one more open stream for this client; False (and nothing counted) if it
    already holds STREAMS_PER_CLIENT. The count expires a while after the newest
    stream's deadline, so slots of a server that died mid-stream come back by themselves."""
    taken = await client.eval(
        _TAKE_SLOT, 1, key, settings.STREAMS_PER_CLIENT, wait_ms // 1000 + 30
    )
    return bool(taken)


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


# Exempt: it only answers GET (changes nothing), and a CSRF refusal of another method
# would be Django's HTML page where the API answers JSON 405.
@csrf_exempt
async def consistency_stream(request):
    if request.method != "GET":
        response = _error("method_not_allowed", f'Method "{request.method}" not allowed.', 405)
        response["Allow"] = "GET"
        return response
    try:
        content = read_token(request.GET.get("token", ""))
        target = content.position
    except InvalidToken:
        return _error("invalid_consistency_token", "token is not a token this shop issued.")
    views = request.GET.get("views", "").split(",")
    if not all(view in projectors.PROJECTORS for view in views):
        return _error(
            "invalid_views",
            f"views must name read models among: {', '.join(projectors.PROJECTORS)}",
        )
    try:
        wait_ms = parse_max_wait_ms(request.GET.get("max_wait_ms"), DEFAULT_WAIT_MS, MAX_WAIT_MS)
    except InvalidMaxWait:
        return _error("invalid_max_wait", "max_wait_ms must be a whole number of milliseconds.")
    waiting = progress.waiting()
    if waiting.full():
        # A stream is a waiting reader too; the process admits a bounded number of them.
        return json_error("overloaded", "Too many readers are waiting; retry shortly.", 503,
                          headers={"Retry-After": str(settings.WEB_RETRY_AFTER_SECONDS)})

    retry_after = await sync_to_async(throttles.stream_wait)(request)
    if retry_after is not None:
        return _too_many("throttled", "Too many streams opened; retry later.", retry_after)
    slots = _slots_key(request)
    try:
        # On the process's bounded Redis pool, like the waits themselves.
        counted = await _take_slot(waiting.client, slots, wait_ms)
    except progress.ASYNC_ERRORS:
        # Redis down: the stream itself will say so (an `error` event); nothing to count.
        counted = None
    if counted is False:
        return _too_many(
            "too_many_streams",
            f"At most {settings.STREAMS_PER_CLIENT} open streams per client; close one first.",
            5,
        )

    async def events():
        started = time.monotonic()
        deadline = started + wait_ms / 1000
        pending = list(dict.fromkeys(views))
        # One wait per view on the process's shared subscription: no connection of the
        # stream's own, and every Redis call ends by the deadline plus the read allowance.
        async def wait_one(view: str) -> tuple[str, bool]:
            # A token of another cluster (before a restore) is never waited for.
            reached, _ = await waiting.wait_for(
                view, target, deadline,
                hopeless=lambda state: bool(content.cluster and state.cluster
                                            and state.cluster != content.cluster),
            )
            return view, reached

        waits = [asyncio.ensure_future(wait_one(view)) for view in pending]
        try:
            yield _event("start", {"views": pending, "max_wait_ms": wait_ms})
            for finished in asyncio.as_completed(waits):
                view, reached = await finished
                if reached:
                    pending.remove(view)
                    waited = int((time.monotonic() - started) * 1000)
                    yield _event("caught_up", {"view": view, "waited_ms": waited})
            if pending:
                yield _event("timeout", {"views": pending, "waited_ms": wait_ms})
            yield _event("end", {})
        except StoreUnavailable as exc:
            yield _event("error", {"code": "read_model_unavailable", "message": str(exc)[:200]})
        finally:
            for task in waits:
                task.cancel()
            if counted:
                try:
                    await waiting.client.decr(slots)
                except (*progress.ASYNC_ERRORS, asyncio.CancelledError):
                    pass  # the count expires by itself

    # From here on the stream only waits: it counts among the waiting readers, not
    # among the requests in flight.
    stop_counting(request)
    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
