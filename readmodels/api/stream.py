"""GET /api/consistency/stream: Server-Sent Events telling when views pass a token.

The client names a consistency token and the views it cares about; the stream sends
one `caught_up` event per view as soon as that view includes the token, then `end`
and closes (or `timeout` at the deadline). Waiting is on the projectors' Redis pub/sub
announcements; no request polls PostgreSQL. Served by the ASGI app. It reveals only
whether views have passed a token, never any data, so it needs no login.
"""

from __future__ import annotations

import asyncio
import json
import time

import redis.asyncio as aioredis
from django.conf import settings
from django.http import JsonResponse, StreamingHttpResponse

from orders.outbox import InvalidToken, decode_token
from readmodels import projectors
from readmodels.pipeline import progress

DEFAULT_WAIT_MS = 10_000
MAX_WAIT_MS = 60_000


def _error(code: str, message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


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
                await pubsub.aclose()
                await client.aclose()
            except (aioredis.ConnectionError, OSError, asyncio.CancelledError):
                pass

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


