"""Redis: documents as JSON under a version, written with a compare-and-set script.

A document is a hash {v: version, d: json} at `<namespace>:<model>:g<generation>:<key>`.
The script writes only when the new version is higher, so duplicates, replays and
reordering can never move a view backwards. The generation lets a rebuild fill a new
key space and switch to it atomically.
"""

from __future__ import annotations

import json
import re
from typing import NoReturn

import redis

from readmodels import config
from readmodels.stores import StoreSlow, StoreUnavailable, read_deadline
from shop.web import redis_clients

# Failures of the server as a whole. Some come as error replies, not dropped
# connections: OOM (maxmemory reached with noeviction), READONLY (a replica after a
# failover), cluster and master-down states. They refuse every write alike, so they are
# never any document's fault.
CONNECTION_ERRORS = (
    redis.ConnectionError,  # includes BusyLoadingError (LOADING) and AuthenticationError
    redis.TimeoutError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterDownError,  # includes MasterDownError
    redis.exceptions.TryAgainError,
    # NOPERM: the ACL took the command away (redis-py strips the code from the message,
    # so the reply pattern below cannot see it).
    redis.exceptions.NoPermissionError,
)
# Store-wide error replies redis-py has no class for: MISCONF (RDB snapshots failing
# with stop-writes-on-bgsave-error), NOREPLICAS (min-replicas-to-write not met), BUSY
# (a script running too long), NOAUTH/NOPERM (credentials or ACL changed).
# (A pipeline's error reads "Command # 1 (...) of pipeline caused error: MISCONF ...".)
_STORE_WIDE_REPLY = re.compile(
    r"(?:^|caused error: )(?:MISCONF|NOREPLICAS|BUSY|NOAUTH|NOPERM|OOM|READONLY) "
)


# Any failure of a Redis call, for writes where no document can be to blame.
ANY_ERROR = redis.RedisError


def unavailable(exc: redis.RedisError) -> StoreUnavailable | None:
    """The StoreUnavailable to raise for a failure of the whole server, else None.

    A timeout is StoreSlow: the server is busy, not down, and the runner retries soon
    with a smaller batch instead of backing off.
    """
    if isinstance(exc, redis.TimeoutError):
        return StoreSlow(f"Redis timed out: {exc}")
    if isinstance(exc, CONNECTION_ERRORS) or (
        isinstance(exc, redis.ResponseError) and _STORE_WIDE_REPLY.search(str(exc))
    ):
        return StoreUnavailable(f"Redis: {type(exc).__name__}: {exc}")
    return None


def _raise_mapped(exc: redis.RedisError) -> NoReturn:
    mapped = unavailable(exc)
    if mapped is not None:
        raise mapped from exc
    raise exc


# KEYS[1] document key; ARGV[1] version; ARGV[2] JSON body.
_CAS_SCRIPT = """
local current = redis.call('HGET', KEYS[1], 'v')
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
return 1
"""


def client() -> redis.Redis:
    """The process's client; inside a projected read, one whose calls end by its deadline."""
    if read_deadline.get() is not None:
        # Socket timeouts are fixed per pool, so reads use a pool of their own whose
        # timeout is the read allowance (the wait before it is bounded on its own).
        return redis_clients.client(timeout=config.read_timeout())
    return redis_clients.client(timeout=config.store_timeout())


def key_prefix(model: str) -> str:
    return f"{config.namespace()}:{model}"


def generation(model: str) -> int:
    try:
        value = client().get(f"{key_prefix(model)}:generation")
    except redis.RedisError as exc:
        _raise_mapped(exc)
    return int(value) if value else 1


def doc_key(model: str, key: str, gen: int | None = None) -> str:
    return f"{key_prefix(model)}:g{gen or generation(model)}:{key}"


def write_documents(model: str, docs, gen: int | None = None) -> tuple[int, int]:
    """Compare-and-set each document; return (written, stale)."""
    if not docs:
        return 0, 0
    gen = gen or generation(model)
    script = client().register_script(_CAS_SCRIPT)
    try:
        pipe = client().pipeline(transaction=False)
        for doc in docs:
            script(
                keys=[doc_key(model, doc.key, gen)],
                args=[doc.version, json.dumps(doc.body, separators=(",", ":"), default=str)],
                client=pipe,
            )
        results = pipe.execute()
    except redis.RedisError as exc:
        _raise_mapped(exc)
    written = sum(1 for r in results if r == 1)
    return written, len(results) - written


def read_document(model: str, key: str) -> tuple[int, dict] | None:
    """Return (version, body) of a document, or None if there is none."""
    try:
        found = client().hmget(doc_key(model, key), ["v", "d"])
    except redis.RedisError as exc:
        _raise_mapped(exc)
    if found[0] is None:
        return None
    return int(found[0]), json.loads(found[1])


def read_versions(model: str, keys: list[str]) -> dict[str, int]:
    if not keys:
        return {}
    gen = generation(model)
    try:
        pipe = client().pipeline(transaction=False)
        for key in keys:
            pipe.hget(doc_key(model, key, gen), "v")
        values = pipe.execute()
    except redis.RedisError as exc:
        _raise_mapped(exc)
    return {k: int(v) for k, v in zip(keys, values, strict=True) if v is not None}


def set_generation(model: str, gen: int) -> None:
    try:
        client().set(f"{key_prefix(model)}:generation", gen)
    except redis.RedisError as exc:
        _raise_mapped(exc)


def iter_keys(model: str, gen: int | None = None, batch_size: int = 1000):
    """Yield the document keys of a generation, in batches."""
    prefix = doc_key(model, "", gen)
    try:
        batch = []
        for raw in client().scan_iter(match=f"{prefix}*", count=batch_size):
            batch.append(raw.decode()[len(prefix):])
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
    except redis.RedisError as exc:
        _raise_mapped(exc)


def delete_keys(model: str, keys: list[str], gen: int | None = None) -> None:
    if not keys:
        return
    gen = gen or generation(model)
    try:
        client().delete(*[doc_key(model, k, gen) for k in keys])
    except redis.RedisError as exc:
        _raise_mapped(exc)


def drop_generation(model: str, gen: int) -> int:
    dropped = 0
    for keys in iter_keys(model, gen):
        delete_keys(model, keys, gen)
        dropped += len(keys)
    return dropped


def _marker(model: str) -> str:
    return f"{key_prefix(model)}:populated"


def mark_populated(model: str) -> None:
    try:
        client().set(_marker(model), 1)
    except redis.RedisError as exc:
        _raise_mapped(exc)


def lost_data(model: str) -> bool:
    """True when the view's marker is gone: Redis restarted empty or was flushed."""
    try:
        return not client().exists(_marker(model))
    except redis.RedisError as exc:
        _raise_mapped(exc)
