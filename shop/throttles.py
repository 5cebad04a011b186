"""Abuse limits: DRF throttles whose counters live in Redis, shared by every web process.

Scopes (rates in settings.REST_FRAMEWORK, each set by THROTTLE_RATE_<SCOPE>):
anonymous reads per address, commands per user (per address when anonymous), login per
address and per account, and the consistency stream per address (readmodels/api/stream.py,
which is a plain Django view and so uses `stream_allowed` here). A throttled request is a
429 `throttled` with Retry-After.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading

from django.core.cache import caches
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

_shared_cache = None
_shared_cache_lock = threading.Lock()


def throttle_cache():
    """One cache client (and so one bounded Redis pool) for the whole process.

    `caches["throttle"]` would be a new client per request context, and under ASGI each
    request's synchronous code runs in a thread of its own: a new Redis connection per
    request. redis-py's pool is thread-safe, so the threads share this one."""
    global _shared_cache
    if _shared_cache is None:
        with _shared_cache_lock:
            if _shared_cache is None:
                _shared_cache = caches.create_connection("throttle")
    return _shared_cache


class RedisRateThrottle(SimpleRateThrottle):
    """A SimpleRateThrottle on the shared Redis cache that lets requests through when
    Redis is down: the shop's reads and commands do not need Redis, and an outage of the
    counters must not become an outage of the shop."""

    @property
    def cache(self):
        return throttle_cache()

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError) as exc:
            logger.warning("throttle %s not applied, Redis unavailable: %s", self.scope, exc)
            return True


class AnonymousReadThrottle(RedisRateThrottle):
    scope = "anon_read"

    def get_cache_key(self, request, view):
        if request.method not in SAFE_METHODS or request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class CommandThrottle(RedisRateThrottle):
    """Every write (POST, PUT, PATCH, DELETE): per user, or per address when anonymous."""

    scope = "commands"

    def get_cache_key(self, request, view):
        if request.method in SAFE_METHODS:
            return None
        ident = (
            f"user-{request.user.pk}" if request.user.is_authenticated else self.get_ident(request)
        )
        return self.cache_format % {"scope": self.scope, "ident": ident}


class LoginAddressThrottle(RedisRateThrottle):
    """Login attempts from one address, whatever the account: password spraying."""

    scope = "login_address"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginAccountThrottle(RedisRateThrottle):
    """Login attempts on one account, whatever the address: guessing one password from
    many addresses. The name is hashed so the counters hold no user names."""

    scope = "login_account"

    def get_cache_key(self, request, view):
        username = request.data.get("username") if hasattr(request.data, "get") else None
        if not isinstance(username, str) or not username:
            return None
        digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
        return self.cache_format % {"scope": self.scope, "ident": digest}


class StreamThrottle(RedisRateThrottle):
    scope = "stream"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def client_address(request) -> str:
    """The client's address the way the DRF throttles see it (NUM_PROXIES applies)."""
    return StreamThrottle().get_ident(request)


def stream_wait(request) -> int | None:
    """None if a new stream is allowed for this client, else the seconds to wait.

    A synchronous Redis round trip: the stream view calls it through sync_to_async."""
    throttle = StreamThrottle()
    # DRF's get_ident reads request.META, which a plain Django request has too.
    if throttle.allow_request(request, None):
        return None
    return max(1, math.ceil(throttle.wait() or 1))
