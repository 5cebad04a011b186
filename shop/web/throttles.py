"""Abuse limits: DRF throttles whose counters live in Redis, shared by every web process.

Scopes (rates in settings.REST_FRAMEWORK, each set by THROTTLE_RATE_<SCOPE>):
anonymous reads per address, commands per user (per address when anonymous), login per
address and per account (`login_wait`, which every password check runs through
shop.web.login_throttle), and the consistency stream per address (the read side's
stream, which is a plain Django view and so uses `stream_wait` here). A throttled
request is a 429 `throttled` with Retry-After.
"""

from __future__ import annotations

import hashlib
import logging
import math
import unicodedata
import uuid

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

from shop.web import redis_clients

logger = logging.getLogger(__name__)

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

# A sliding window per key: the times of the requests let through in the last
# `duration` seconds, in a sorted set. One script, so checking and counting are one
# step (two requests at the limit cannot both pass) and one round trip. Redis's clock,
# so web processes on different hosts count alike. Returns {1} when the request may
# pass, else {0, seconds until the oldest counted request leaves the window}, a string
# (a Lua number would come back truncated to an integer).
_TAKE = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local duration, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - duration)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(duration))
  return {1}
end
local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
return {0, tostring(duration - (now - oldest))}
"""


def _take_script():
    """The script on the throttles' own bounded Redis pool, one per process (thread-safe)."""
    client = redis_clients.client(
        pool="throttles", timeout=2, connect_timeout=2, health_check_interval=0
    )
    return client.register_script(_TAKE)


class RedisRateThrottle(SimpleRateThrottle):
    """DRF's sliding-window rate (SimpleRateThrottle's rates and keys), counted in Redis
    by one atomic script, that lets requests through when Redis is down: the shop's
    reads and commands do not need Redis, and an outage of the counters must not
    become an outage of the shop.

    (DRF's own throttle reads the key's history, then writes it back: two round trips
    with a pickled list of up to `num_requests` times, and a race at the limit.)
    """

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        try:
            answer = _take_script()(
                keys=[f"{settings.THROTTLE_KEY_PREFIX}:{self.key}"],
                args=[self.duration, self.num_requests, uuid.uuid4().hex],
            )
        except (RedisError, OSError) as exc:
            logger.warning("throttle %s not applied, Redis unavailable: %s", self.scope, exc)
            return True
        self._wait = float(answer[1]) if not answer[0] else None
        return bool(answer[0])

    def wait(self):
        return self._wait

    def may_refuse(self, *, method: str, anonymous: bool) -> bool:
        """Whether this throttle counts requests of this method (for the OpenAPI schema's
        429s); `anonymous`: the view lets anonymous requests in."""
        return True


class AnonymousReadThrottle(RedisRateThrottle):
    scope = "anon_read"

    def get_cache_key(self, request, view):
        if request.method not in SAFE_METHODS or request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def may_refuse(self, *, method: str, anonymous: bool) -> bool:
        return method in SAFE_METHODS and anonymous


class CommandThrottle(RedisRateThrottle):
    """Every write (POST, PUT, PATCH, DELETE): per user, or per address when anonymous."""

    scope = "commands"

    def may_refuse(self, *, method: str, anonymous: bool) -> bool:
        return method not in SAFE_METHODS

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
    many addresses. The identity is hashed so the counters hold no user names."""

    scope = "login_account"

    def __init__(self, identity: str):
        super().__init__()
        self.identity = identity

    def get_cache_key(self, request, view):
        digest = hashlib.sha256(self.identity.encode()).hexdigest()[:32]
        return self.cache_format % {"scope": self.scope, "ident": digest}


def login_identity(username) -> str:
    """The account a login attempt is counted against, however its name was written.

    Whatever the form or the JSON carried (a number, spaces around, another case, a
    compatibility form of a character), the same account counts once: NFKC as Django's
    username fields normalise, then stripped and case-folded. Case-folding merges names
    Django's exact lookup keeps apart, so they share one budget: a guesser cannot spread
    tries over "Alice" and "ALICE".
    """
    return unicodedata.normalize("NFKC", str(username)).strip().casefold()


def login_wait(request, username) -> float | None:
    """Count one password presented for `username`; None if it may be checked, else the
    seconds to wait. Both counters count the attempt, also when one of them refuses it.

    `request` is Django's (None outside a request: only the account then counts).
    """
    throttles: list[RedisRateThrottle] = [LoginAddressThrottle()] if request is not None else []
    identity = login_identity(username) if username is not None else ""
    if identity:
        throttles.append(LoginAccountThrottle(identity))
    waits = [t.wait() or 1 for t in throttles if not t.allow_request(request, None)]
    return max(waits) if waits else None


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
