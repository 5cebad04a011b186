"""GET /api/consistency/stream: Server-Sent Events telling when views pass a token.

The client names a consistency token and the views it cares about; the stream sends
one `caught_up` event per view as soon as that view includes the token, then `end`
and closes (or `timeout` at the deadline). Waiting is on the projectors' Redis pub/sub
announcements; no request polls PostgreSQL. Served by the ASGI app. It reveals only
whether views have passed a token, never any data, so it needs no login; opening
streams is throttled per client address, and a client may hold only so many at once
(STREAMS_PER_CLIENT, counted in Redis).
"""

from __future__ import annotations

import asyncio
import json
import time

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import JsonResponse, StreamingHttpResponse

from orders.outbox import InvalidToken, decode_token
from readmodels import projectors
from readmodels.pipeline import progress
from shop import throttles

DEFAULT_WAIT_MS = 10_000
MAX_WAIT_MS = 60_000


def _error(code: str, message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _too_many(code: str, message: str, retry_after: int) -> JsonResponse:
    response = _error(code, message, 429)
    response["Retry-After"] = str(retry_after)
    return response


def _slots_key(request) -> str:
    prefix = settings.CACHES["throttle"]["KEY_PREFIX"]
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


async def _take_slot(key: str, wait_ms: int) -> bool:
    """Count one more open stream for this client; False (and nothing counted) if it
    already holds STREAMS_PER_CLIENT. The count expires a while after the newest
    stream's deadline, so slots of a server that died mid-stream come back by themselves."""
    client = aioredis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        taken = await client.eval(
            _TAKE_SLOT, 1, key, settings.STREAMS_PER_CLIENT, wait_ms // 1000 + 30
        )
        return bool(taken)
    finally:
        await client.aclose()


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


async def consistency_stream(request):
    try:
        target = decode_token(request.GET.get("token", ""))
    except InvalidToken:
        return _error("invalid_consistency_token", "token is not a token this shop issued.")
    views = [v for v in request.GET.get("views", "").split(",") if v]
    unknown = [v for v in views if v not in projectors.PROJECTORS]
    if not views or unknown:
        return _error(
            "invalid_views",
            f"views must name read models among: {', '.join(projectors.PROJECTORS)}",
        )
    raw_wait = request.GET.get("max_wait_ms", "")
    if raw_wait and (not raw_wait.isdigit() or len(raw_wait) > 9):
        return _error("invalid_max_wait", "max_wait_ms must be a whole number of milliseconds.")
    wait_ms = min(int(raw_wait) if raw_wait else DEFAULT_WAIT_MS, MAX_WAIT_MS)

    retry_after = await sync_to_async(throttles.stream_wait)(request)
    if retry_after is not None:
        return _too_many("throttled", "Too many streams opened; retry later.", retry_after)
    slots = _slots_key(request)
    try:
        counted = await _take_slot(slots, wait_ms)
    except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
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
        client = aioredis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pending = list(dict.fromkeys(views))
        try:
            await pubsub.subscribe(*[progress.channel(v) for v in pending])
            yield _event("start", {"views": pending, "max_wait_ms": wait_ms})
            while pending:
                for view in list(pending):
                    state = await progress.astate(view, client)
                    if state.covers(target):
                        pending.remove(view)
                        waited = int((time.monotonic() - started) * 1000)
                        yield _event("caught_up", {"view": view, "waited_ms": waited})
                remaining = deadline - time.monotonic()
                if not pending or remaining <= 0:
                    break
                # Woken by an announcement, or a quarter second at most.
                await pubsub.get_message(timeout=min(remaining, 0.25))
            if pending:
                yield _event("timeout", {"views": pending, "waited_ms": wait_ms})
            yield _event("end", {})
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
            yield _event("error", {"code": "read_model_unavailable", "message": str(exc)[:200]})
        finally:
            try:
                if counted:
                    await client.decr(slots)
                await pubsub.aclose()
                await client.aclose()
            except (aioredis.ConnectionError, OSError, asyncio.CancelledError):
                pass

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


