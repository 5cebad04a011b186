"""Where each read model stands, published in Redis for readers that must not ask PostgreSQL.

After every batch a projector segment writes its checkpoint and the age of its oldest
change not yet visible to a hash, and announces it on a pub/sub channel. Projected
reads take a read model's position as the minimum over its segments, and wait for a
consistency token by listening on the channel (no polling of the database).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime

from orders.outbox import Position
from readmodels import config
from readmodels.stores import StoreUnavailable, redis_store


def _key(projector: str, segment: int, segments: int) -> str:
    return f"{config.namespace()}:progress:{projector}:{segment}of{segments}"


def channel(projector: str) -> str:
    return f"{config.namespace()}:progress:{projector}"


def publish(
    *,
    projector: str,
    segment: int,
    segments: int,
    checkpoint: Position,
    pending_since: datetime | None,
) -> None:
    """Record a segment's checkpoint and announce it (best effort: Redis may be down)."""
    now = time.time()
    state = {
        "xid": checkpoint.xid,
        "position": checkpoint.position,
        "pending_since": pending_since.timestamp() if pending_since else None,
        "reported_at": now,
    }
    client = redis_store.client()
    pipe = client.pipeline(transaction=False)
    pipe.set(_key(projector, segment, segments), json.dumps(state))
    pipe.publish(channel(projector), json.dumps({"segment": segment, **state}))
    try:
        pipe.execute()
    except redis_store.ANY_ERROR as exc:  # MISCONF too: a SET and a PUBLISH fail only store-wide
        raise StoreUnavailable(f"Redis: {exc}") from exc


def _head_key(projector: str) -> str:
    return f"{config.namespace()}:progress:{projector}:newest-commit"


def note_commit(pipe, projector_names, position: Position) -> None:
    """Add to `pipe`: per read model, the newest commit it must show (for lag)."""
    state = json.dumps({"xid": position.xid, "position": position.position, "at": time.time()})
    for name in projector_names:
        pipe.set(_head_key(name), state, ex=3600)


@dataclass(frozen=True)
class ReadModelState:
    position: Position | None  # None: some segment has not reported (yet)
    lag_ms: int
    reported: bool

    def covers(self, target: Position) -> bool:
        return self.position is not None and self.position.covers(target)


def state(projector: str) -> ReadModelState:
    """Return the read model's position (min over segments) and its lag in milliseconds.

    Lag is the age of the oldest change not yet visible. When a segment's last report is
    older than a few sweeps, its projector may be stuck, so the age of that report is
    the honest bound instead.
    """
    segments = config.segments(projector)
    keys = [_key(projector, i, segments) for i in range(segments)]
    try:
        *values, head = redis_store.client().mget([*keys, _head_key(projector)])
    except redis_store.CONNECTION_ERRORS as exc:
        raise StoreUnavailable(f"Redis: {exc}") from exc
    now = time.time()
    positions, lag = [], 0.0
    silent_after = 3 * config.sweep_interval()
    for value in values:
        if value is None:
            return ReadModelState(None, 0, False)
        report = json.loads(value)
        positions.append(Position(report["xid"], report["position"]))
        if report["pending_since"] is not None:
            lag = max(lag, now - report["pending_since"])
        if now - report["reported_at"] > silent_after:
            lag = max(lag, now - report["reported_at"])
    if head is not None:
        newest = json.loads(head)
        if not min(positions).covers(Position(newest["xid"], newest["position"])):
            # A commit the view does not show yet: it is at least that old.
            lag = max(lag, now - newest["at"])
    return ReadModelState(min(positions), int(lag * 1000), True)


def wait_for(projector: str, target: Position, deadline: float) -> tuple[bool, ReadModelState]:
    """Wait until the read model covers `target` or the monotonic `deadline` passes."""
    current = state(projector)
    if current.covers(target) or time.monotonic() >= deadline:
        return current.covers(target), current
    pubsub = redis_store.client().pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(channel(projector))
        # Re-check after subscribing: an advance between the first check and the
        # subscription would otherwise be missed until the next one.
        current = state(projector)
        while not current.covers(target):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # Woken by an announcement, or after a quarter second at most: a message
            # missed during a Redis reconnect must not hold a reader to its deadline.
            pubsub.get_message(timeout=min(remaining, 0.25))
            current = state(projector)
        return current.covers(target), current
    except redis_store.CONNECTION_ERRORS as exc:
        raise StoreUnavailable(f"Redis: {exc}") from exc
    finally:
        try:
            pubsub.close()
        except redis_store.CONNECTION_ERRORS:
            pass


async def astate(projector: str, client) -> ReadModelState:
    """state() for async code, on a redis.asyncio client."""
    segments = config.segments(projector)
    values = await client.mget([_key(projector, i, segments) for i in range(segments)])
    positions = []
    for value in values:
        if value is None:
            return ReadModelState(None, 0, False)
        report = json.loads(value)
        positions.append(Position(report["xid"], report["position"]))
    return ReadModelState(min(positions), 0, True)
