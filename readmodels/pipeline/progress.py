"""Where each read model stands, published in Redis for readers that must not ask PostgreSQL.

After every batch a projector segment writes its checkpoint and the age of its oldest
change not yet visible (a report), and announces it on a pub/sub channel; a report
never moves backwards, and for a view in Redis it never claims more than Redis holds. Projected
reads take a read model's position as the minimum over its segments, and wait for a
consistency token by listening on the channel (no polling of the database).
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from dataclasses import dataclass
from datetime import datetime

import redis.asyncio as aioredis

from orders.outbox import Position
from readmodels import config
from readmodels.stores import StoreUnavailable, redis_store
from shop.web import redis_clients


def _key(projector: str, segment: int, segments: int) -> str:
    return f"{config.namespace()}:progress:{projector}:{segment}of{segments}"


def channel(projector: str) -> str:
    return f"{config.namespace()}:progress:{projector}"


# A segment's report, kept only if it says at least as much as the one stored (a
# late report of a worker that lost its segment never moves a view backwards), and,
# when asked, only if the store holds what the report builds on.
# KEYS[1] the report; ARGV[1] the report (JSON, xid and position as decimal strings),
# ARGV[2], ARGV[3] its xid and position, ARGV[4], ARGV[5] the position the store must
# hold already ('' to not check), ARGV[6] the channel, ARGV[7] the announcement.
# xids and positions pass 2^53, beyond what a Lua number holds exactly: they are
# compared as decimal strings, by length, then lexically.
_PUBLISH = """
local function less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local stored = redis.call('GET', KEYS[1])
local sx, sp
if stored then
  local ok, report = pcall(cjson.decode, stored)
  if ok and type(report) == 'table' and type(report.xid) == 'string'
     and type(report.position) == 'string' then
    sx, sp = report.xid, report.position
  end
end
if ARGV[4] ~= '' then
  if sx then
    if less(sx, ARGV[4]) or (sx == ARGV[4] and less(sp, ARGV[5])) then
      return {'behind', sx, sp}
    end
  elseif not stored and (ARGV[4] ~= '0' or ARGV[5] ~= '0') then
    return {'lost'}
  end
end
if sx and (less(ARGV[2], sx) or (ARGV[2] == sx and less(ARGV[3], sp))) then
  return {'older', sx, sp}
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return {'published'}
"""


@dataclass(frozen=True)
class Published:
    """What became of a report: `published`; `older` (a newer one is kept); `behind`
    (the store holds less than the report builds on: `stored`); `lost` (the store holds
    no report at all, and the report builds on something)."""

    outcome: str
    stored: Position | None = None


def publish(
    *,
    projector: str,
    segment: int,
    segments: int,
    checkpoint: Position,
    pending_since: datetime | None,
    store_holds: Position | None = None,
    cluster: str | None = None,
) -> Published:
    """Record a segment's checkpoint and announce it.

    Never backwards: a report older than the stored one is dropped. `store_holds`: for a
    view that lives in this Redis, where the batch began; the report is kept only if
    the stored report (written after the documents it covers, so it is never ahead of
    them in what Redis keeps: a snapshot, the append-only file or a replica) has got
    there. If Redis came back older than that, the report is refused (`behind`), so
    readers are never told of documents Redis does not have.
    """
    now = time.time()
    state = {
        "xid": str(checkpoint.xid),
        "position": str(checkpoint.position),
        "pending_since": pending_since.timestamp() if pending_since else None,
        "reported_at": now,
        # The PostgreSQL cluster the position belongs to (tokens of another are not
        # waited for).
        "cluster": cluster,
    }
    check = store_holds
    try:
        answer = redis_store.client().eval(
            _PUBLISH, 1, _key(projector, segment, segments),
            json.dumps(state), state["xid"], state["position"],
            "" if check is None else str(check.xid), "" if check is None else str(check.position),
            channel(projector), json.dumps({"segment": segment, **state}),
        )
    except redis_store.ANY_ERROR as exc:  # MISCONF too: the script fails only store-wide
        raise StoreUnavailable(f"Redis: {exc}") from exc
    outcome = answer[0].decode() if isinstance(answer[0], bytes) else answer[0]
    stored = Position(int(answer[1]), int(answer[2])) if len(answer) == 3 else None
    return Published(outcome, stored)


def forget(projector: str) -> None:
    """Drop every segment's report of a read model (after a restore, a new start)."""
    client = redis_store.client()
    stale = list(client.scan_iter(match=f"{channel(projector)}:*", count=1000))
    if stale:
        client.delete(*stale)


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
    cluster: str | None = None  # the PostgreSQL cluster of `position`, when reported

    def covers(self, target: Position) -> bool:
        return self.position is not None and self.position.covers(target)


def _keys(projector: str) -> list[str]:
    segments = config.segments(projector)
    return [*(_key(projector, i, segments) for i in range(segments)), _head_key(projector)]


def _decode(projector: str, values: list) -> ReadModelState:
    """The read model's state from the segments' reports and its newest commit."""
    *reports, head = values
    now = time.time()
    positions, lag, cluster = [], 0.0, None
    silent_after = 3 * config.sweep_interval()
    for value in reports:
        if value is None:
            return ReadModelState(None, 0, False)
        report = json.loads(value)
        positions.append(Position(int(report["xid"]), int(report["position"])))
        cluster = cluster or report.get("cluster")
        if report["pending_since"] is not None:
            lag = max(lag, now - report["pending_since"])
        if now - report["reported_at"] > silent_after:
            lag = max(lag, now - report["reported_at"])
    if head is not None:
        newest = json.loads(head)
        if not min(positions).covers(Position(newest["xid"], newest["position"])):
            # A commit the view does not show yet: it is at least that old.
            lag = max(lag, now - newest["at"])
    return ReadModelState(min(positions), int(lag * 1000), True, cluster)


def state(projector: str) -> ReadModelState:
    """Return the read model's position (min over segments) and its lag in milliseconds.

    Lag is the age of the oldest change not yet visible. When a segment's last report is
    older than a few sweeps, its projector may be stuck, so the age of that report is
    the honest bound instead.
    """
    try:
        values = redis_store.client().mget(_keys(projector))
    except redis_store.CONNECTION_ERRORS as exc:
        raise StoreUnavailable(f"Redis: {exc}") from exc
    return _decode(projector, values)


# --- waiting for a token, without a thread ------------------------------------------

ASYNC_ERRORS = (aioredis.ConnectionError, aioredis.TimeoutError, OSError, asyncio.TimeoutError)


class Waiting:
    """Token waits of one event loop: one pub/sub connection, however many readers wait.

    A reader registers (read model, target) and awaits a future; a single listener task
    subscribed to every read model's channel re-reads a model's state once per
    announcement (and every quarter second, for announcements missed during a Redis
    reconnect) and resolves the futures whose target it covers. So a waiting reader
    holds no thread, no database connection and no Redis connection of its own.
    """

    RECHECK_SECONDS = 0.25

    def __init__(self):
        self.client = redis_clients.async_client(
            timeout=config.read_timeout(),
            # Named, so that operators (and tests) can tell it in CLIENT LIST.
            client_name=f"{config.namespace()}:token-waits",
        )
        self.count = 0  # readers waiting now (token reads and streams)
        self._waiters: dict[str, dict[asyncio.Future, Position]] = {}
        self._listener: asyncio.Task | None = None

    def full(self) -> bool:
        return self.count >= config.max_waiting_readers()

    async def state(self, projector: str, deadline: float) -> ReadModelState:
        """state(), on the asyncio client, answered by the monotonic `deadline`."""
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                values = await self.client.mget(_keys(projector))
        except ASYNC_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {exc!r}") from exc
        return _decode(projector, values)

    async def wait_for(
        self, projector: str, target: Position, deadline: float, *, hopeless=None
    ) -> tuple[bool, ReadModelState]:
        """Wait until the read model covers `target` or the monotonic `deadline` passes.

        `hopeless(state)`: when it says the view cannot get there in time (a view past
        its SLO: a transaction holds the outbox horizon, a store fails), answer at once
        instead of waiting. Every Redis call ends by the deadline plus the read
        allowance; a wait never ends later than that, whatever Redis does.
        """
        allowance = config.read_timeout()
        current = await self.state(projector, deadline + allowance)
        if current.covers(target) or time.monotonic() >= deadline:
            return current.covers(target), current
        if hopeless is not None and hopeless(current):
            return False, current
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(projector, {})[future] = target
        self.count += 1
        try:
            self._ensure_listener()
            # Re-check once registered: an advance just before would not be announced.
            current = await self.state(projector, deadline + allowance)
            if current.covers(target):
                return True, current
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                    current = await future
                return True, current
            except TimeoutError:
                pass
            current = await self.state(projector, time.monotonic() + allowance)
            return current.covers(target), current
        finally:
            self.count -= 1
            waiters = self._waiters.get(projector, {})
            waiters.pop(future, None)
            if not waiters:
                self._waiters.pop(projector, None)

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        pubsub = None
        try:
            while self._waiters:
                try:
                    if pubsub is None:
                        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                        await pubsub.psubscribe(channel("*"))
                    announced = set()
                    message = await pubsub.get_message(timeout=self.RECHECK_SECONDS)
                    while message is not None:
                        announced.add(message["channel"].decode().rsplit(":", 1)[-1])
                        message = await pubsub.get_message(timeout=0)
                except ASYNC_ERRORS:
                    # Redis went away; readers end at their deadlines on their own. Try
                    # again after a pause, on a new connection.
                    if pubsub is not None:
                        await _close_quietly(pubsub)
                    pubsub = None
                    await asyncio.sleep(self.RECHECK_SECONDS)
                    announced = set(self._waiters)
                await self._resolve(announced or set(self._waiters))
        finally:
            if pubsub is not None:
                await _close_quietly(pubsub)

    async def _resolve(self, projectors) -> None:
        for projector in list(projectors):
            waiters = self._waiters.get(projector)
            if not waiters:
                continue
            try:
                current = await self.state(
                    projector, time.monotonic() + config.read_timeout()
                )
            except StoreUnavailable:
                continue
            for future, target in list(waiters.items()):
                if not future.done() and current.covers(target):
                    future.set_result(current)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except (asyncio.CancelledError, *ASYNC_ERRORS):
                pass
        await redis_clients.aclose(self.client)


async def _close_quietly(pubsub) -> None:
    try:
        await pubsub.aclose()
    except (*ASYNC_ERRORS, asyncio.CancelledError):
        pass


_waiting: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def waiting() -> Waiting:
    """The running event loop's Waiting: an ASGI web process has one loop for its life.

    A loop made for one request (a WSGI server, Django's test client) must not keep one:
    use a Waiting of its own and close it (readmodels.api.waits.wait_for_token does).
    """
    loop = asyncio.get_running_loop()
    found = _waiting.get(loop)
    if found is None:
        found = _waiting[loop] = Waiting()
    return found
