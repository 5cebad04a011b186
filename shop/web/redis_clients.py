"""The shop's Redis clients, made from settings in one place (sync and asyncio).

Without REDIS_SENTINELS a client connects to REDIS_URL. With it, a client asks those
sentinels for the address of the primary named REDIS_SENTINEL_MASTER whenever it opens a
connection, so after a failover its new connections reach the promoted replica; REDIS_URL
then gives only the database number and the credentials. Either way every client has a
bounded blocking pool (REDIS_MAX_CONNECTIONS; a caller waits REDIS_POOL_TIMEOUT_SECONDS
for a free connection, then gets a ConnectionError) and a timeout on every socket call.

How a Sentinel client follows a failover (redis-py's Sentinel connections, both kinds):
- a connection to a primary that died fails its call with a ConnectionError (nothing
  retries it: a retry is the caller's choice); the next connection asks the sentinels.
  Until they agree the primary is down they still name it (connections are refused,
  ConnectionError); while it is down and not yet replaced they name none
  (MasterNotFoundError, a ConnectionError); then they name the replica they promoted;
- a primary that was demoted and answers READONLY: the connection is closed and the call
  fails with a ConnectionError, so the next one asks the sentinels again;
- when the address changes, the pool closes its idle connections to the old primary.
So a call during a failover fails as a lost connection does (every caller already treats
that as "the store is unavailable"), and new calls reach the new primary.

The Celery broker goes through the same sentinels (kombu's sentinel:// transport):
`broker()` turns CELERY_BROKER_URL into that URL and its transport options.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlparse

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.asyncio import sentinel as async_sentinel
from redis.sentinel import Sentinel, SentinelConnectionPool

# A sentinel that does not answer within this long is skipped for the next one.
SENTINEL_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Target:
    """Where the clients connect and how many connections each pool may hold."""

    url: str
    sentinels: tuple[tuple[str, int], ...]
    master: str
    sentinel_password: str | None
    max_connections: int
    pool_timeout: float


@functools.cache
def target() -> Target:
    """Where the clients connect, from settings (read again when a REDIS_* setting changes)."""
    return Target(
        url=settings.REDIS_URL,
        sentinels=tuple(tuple(address) for address in settings.REDIS_SENTINELS),
        master=settings.REDIS_SENTINEL_MASTER,
        sentinel_password=settings.REDIS_SENTINEL_PASSWORD or None,
        max_connections=settings.REDIS_MAX_CONNECTIONS,
        pool_timeout=settings.REDIS_POOL_TIMEOUT_SECONDS,
    )


# (pool name, timeouts) -> client. A dict, not a cache over target(): client() is on
# the path of every Redis call, and building the target from settings each time costs
# ten times what the lookup does.
_clients: dict[tuple, redis.Redis] = {}


@receiver(setting_changed)
def _forget_clients(*, setting: str, **kwargs) -> None:
    """A changed REDIS_* setting (tests) gives new clients from then on."""
    if setting.startswith("REDIS_"):
        target.cache_clear()
        _clients.clear()


def client(
    *,
    timeout: float,
    connect_timeout: float | None = None,
    health_check_interval: int = 30,
    pool: str = "default",
) -> redis.Redis:
    """The process's client with these timeouts, on a bounded pool of its own (thread-safe).

    `timeout` bounds every socket read and write, `connect_timeout` (min(timeout, 2) by
    default) a connect. Clients that ask for the same `pool` name and timeouts share one
    pool; a different `pool` name gets a separate pool of the same bound. Pools notice a
    fork and start afresh in the child (prefork workers).
    """
    key = (pool, timeout, connect_timeout, health_check_interval)
    found = _clients.get(key)
    if found is None:
        # Two threads may both make one here: one of them is kept, the other dropped.
        found = _clients.setdefault(key, _new_client(
            target(), timeout,
            min(timeout, 2.0) if connect_timeout is None else connect_timeout,
            health_check_interval,
        ))
    return found


def _new_client(
    where: Target, timeout: float, connect_timeout: float, health_check_interval: int
) -> redis.Redis:
    options = _pool_options(where, timeout, connect_timeout, health_check_interval)
    if not where.sentinels:
        return redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(where.url, **options))
    manager = Sentinel(
        where.sentinels,
        sentinel_kwargs=_sentinel_options(where, connect_timeout),
        **_credentials(where.url),
    )
    return manager.master_for(
        where.master, connection_pool_class=_BlockingSentinelConnectionPool, **options
    )


def async_client(
    *,
    timeout: float,
    connect_timeout: float | None = None,
    health_check_interval: int = 30,
    client_name: str | None = None,
) -> aioredis.Redis:
    """A new asyncio client on a bounded pool of its own, for the running event loop.

    Its connections belong to that loop: make one per loop and end it with aclose().
    `client_name` names its connections in CLIENT LIST.
    """
    where = target()
    if connect_timeout is None:
        connect_timeout = min(timeout, 2.0)
    options = _pool_options(where, timeout, connect_timeout, health_check_interval)
    if client_name is not None:
        options["client_name"] = client_name
    if not where.sentinels:
        return aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(where.url, **options)
        )
    manager = async_sentinel.Sentinel(
        where.sentinels,
        sentinel_kwargs=_sentinel_options(where, connect_timeout),
        **_credentials(where.url),
    )
    return manager.master_for(
        where.master, connection_pool_class=_AsyncBlockingSentinelConnectionPool, **options
    )


async def aclose(client: aioredis.Redis) -> None:
    """Close an async_client(): its pool, and its connections to the sentinels."""
    await client.aclose()
    await client.connection_pool.disconnect()
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()


def broker(
    url: str,
    *,
    sentinels: list[tuple[str, int]],
    master: str,
    sentinel_password: str | None = None,
) -> tuple[str, dict]:
    """The Celery broker URL and transport options for a redis:// CELERY_BROKER_URL.

    Without sentinels: the URL as it is, no options. With them: kombu's sentinel:// URL
    (one per sentinel, each with the URL's credentials and database number) and
    `master_name`; the sentinels' own password and timeouts go in `sentinel_kwargs`.
    Called by the settings, before Django is set up: it takes its settings as arguments.
    """
    if not sentinels:
        return url, {}
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "sentinel"):
        return url, {}  # another kind of broker: Sentinel is not its business
    options = {
        "master_name": master,
        "sentinel_kwargs": {
            "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
            "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
            **({"password": sentinel_password} if sentinel_password else {}),
        },
    }
    if parsed.scheme == "sentinel":
        return url, options  # already one (a process started by another passes it on)
    userinfo = ""
    if parsed.username or parsed.password:
        # urlparse leaves them percent-encoded: decode, then encode once for the new URL.
        user, password = (quote(unquote(part or ""), safe="") for part in (parsed.username, parsed.password))
        userinfo = f"{user}:{password}@"
    database = parsed.path.lstrip("/") or "0"
    return ";".join(
        f"sentinel://{userinfo}{host}:{port}/{database}" for host, port in sentinels
    ), options


def _pool_options(
    where: Target, timeout: float, connect_timeout: float, health_check_interval: int
) -> dict:
    return {
        "max_connections": where.max_connections,
        "timeout": where.pool_timeout,  # the wait for a free connection
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout,
        "health_check_interval": health_check_interval,
    }


def _sentinel_options(where: Target, connect_timeout: float) -> dict:
    """The clients of the sentinels themselves: short timeouts, bounded too."""
    return {
        "socket_timeout": min(connect_timeout, SENTINEL_TIMEOUT_SECONDS),
        "socket_connect_timeout": min(connect_timeout, SENTINEL_TIMEOUT_SECONDS),
        "max_connections": where.max_connections,
        **({"password": where.sentinel_password} if where.sentinel_password else {}),
    }


def _credentials(url: str) -> dict:
    """What REDIS_URL still says when the sentinels give the address: database, user, password."""
    parsed = urlparse(url)
    if parsed.scheme != "redis":
        raise ImproperlyConfigured(
            f"With REDIS_SENTINELS, REDIS_URL must be a redis:// URL (its database number "
            f"and credentials are used, not its host), not {parsed.scheme}://"
        )
    options = redis.connection.parse_url(url)
    return {k: v for k, v in options.items() if k in ("db", "username", "password")}


class _BlockingSentinelConnectionPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's Sentinel pool is a plain ConnectionPool: past max_connections it fails at
    once instead of waiting. This one waits as BlockingConnectionPool does."""

    def disconnect(self, inuse_connections: bool = True) -> None:
        # When the primary moved the Sentinel pool asks to close only the idle
        # connections; BlockingConnectionPool.disconnect() would close those in use too,
        # under other threads' calls.
        if inuse_connections:
            super().disconnect()
            return
        with self.pool.mutex:
            for connection in self.pool.queue:
                if connection is not None:
                    connection.disconnect()


class _AsyncBlockingSentinelConnectionPool(
    async_sentinel.SentinelConnectionPool, aioredis.BlockingConnectionPool
):
    """The asyncio Sentinel pool, waiting for a free connection as BlockingConnectionPool does."""
