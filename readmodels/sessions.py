"""Session consistency: the token of each signed-in user's latest command, kept in Redis.

A command's answer carries a consistency token; the read side remembers the newest one
per user, so that the user's projected reads wait for it even when the client does not
send it back (another device, a reloaded page). Redis is shared by every web process,
so the memory survives a process restart and follows the user across devices.

Tokens are opaque to Redis, so the position (and its cluster) travels beside the token
and a compare-and-set script keeps the newest: two commands answered out of order never
leave the older token behind. A token of another cluster (the database was restored
into a new one) is replaced by any new one: positions of two clusters do not compare.
"""

from __future__ import annotations

import logging

from orders.outbox import InvalidToken, Position, TokenContent, read_token
from readmodels import config
from readmodels.stores import redis_store

logger = logging.getLogger(__name__)

# KEYS[1] the user's key; ARGV xid, position (decimal strings), token, ttl in ms, cluster.
# xids may pass 2^53, beyond what a Lua number holds exactly: compare decimal strings
# by length, then lexically.
_REMEMBER_SCRIPT = """
local function less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local xid = redis.call('HGET', KEYS[1], 'xid')
local pos = redis.call('HGET', KEYS[1], 'pos')
local cluster = redis.call('HGET', KEYS[1], 'cluster')
local newer = true
if xid and pos and (cluster or '') == ARGV[5] then
  if less(ARGV[1], xid) or (ARGV[1] == xid and not less(pos, ARGV[2])) then
    newer = false
  end
end
if newer then
  redis.call('HSET', KEYS[1], 'xid', ARGV[1], 'pos', ARGV[2], 'token', ARGV[3],
             'cluster', ARGV[5])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if newer then return 1 end
return 0
"""


def key(user_id: int) -> str:
    return f"{config.namespace()}:session-token:{user_id}"


def remember(*, user_id: int, token: str) -> bool:
    """Keep `token` as the user's latest unless a newer one is kept; True if it was kept."""
    content = read_token(token)
    position = content.position
    script = redis_store.client().register_script(_REMEMBER_SCRIPT)
    ttl_ms = config.session_token_ttl_seconds() * 1000
    return bool(
        script(keys=[key(user_id)],
               args=[position.xid, position.position, token, ttl_ms, content.cluster or ""])
    )


def remember_best_effort(*, user_id: int, token: str) -> None:
    """remember(), never failing the command that was already committed: any refusal of
    Redis (down, OOM, READONLY, MISCONF, NOPERM, BUSY, NOREPLICAS...) is only logged."""
    try:
        remember(user_id=user_id, token=token)
    except (redis_store.ANY_ERROR, InvalidToken) as exc:
        logger.warning("could not remember the session token of user %s: %r", user_id, exc)


def _position(values) -> Position | None:
    xid, pos = values
    if xid is None or pos is None:
        return None
    return Position(int(xid), int(pos))


def remembered(user_id: int) -> Position | None:
    """The position of the user's latest command, if one is remembered."""
    return _position(redis_store.client().hmget(key(user_id), ["xid", "pos"]))


async def aremembered(client, user_id: int) -> TokenContent | None:
    """The user's latest command, with its cluster, on an asyncio Redis client (the token
    waits' own)."""
    xid, pos, cluster = await client.hmget(key(user_id), ["xid", "pos", "cluster"])
    position = _position((xid, pos))
    if position is None:
        return None
    return TokenContent(position, cluster.decode() if cluster else None)


def forget_everyone() -> int:
    """Forget every user's remembered token (after a restore: they name the old cluster)."""
    client = redis_store.client()
    keys = list(client.scan_iter(match=key("*"), count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start:start + 1000])
    return len(keys)
