"""Abuse limits and API tokens, over HTTP against real uvicorn servers and Redis.

Each server here runs with low rates for the scope under test and a throttle key prefix
of its own, so its counters start at zero and touch no other test's. Addresses other
than 127.0.0.1 are only X-Forwarded-For values read by a server told it sits behind one
proxy (NUM_PROXIES=1): no traffic goes anywhere but loopback.
"""

from __future__ import annotations

import http.client
import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from knox.models import AuthToken

from orders.outbox import Position, encode_token
from tests.support.http import Answer, call
from tests.support.readside import project_all
from tests.support.servers import uvicorn_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def throttled_server(**env):
    return uvicorn_server(THROTTLE_KEY_PREFIX=f"throttle-test-{uuid.uuid4().hex}", **env)


def assert_throttled(answer, code: str = "throttled"):
    assert answer.status == 429, answer
    assert answer.code == code, answer
    assert int(answer.headers["retry-after"]) >= 1, answer


def login(port, username, password, address=None):
    headers = {"X-Forwarded-For": address} if address else {}
    return call(port, "POST", "/api/auth/token", {"username": username, "password": password},
                headers)


def user(name: str, password: str = "right-password-123"):
    return get_user_model().objects.create_user(username=name, password=password)


# --- login --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def login_server(django_db_setup, elasticsearch_server):
    with throttled_server(NUM_PROXIES="1", THROTTLE_RATE_LOGIN_ACCOUNT="3/min",
                          THROTTLE_RATE_LOGIN_ADDRESS="5/min") as port:
        yield port


def test_login_is_throttled_per_account_from_any_address(login_server):
    """Guessing one password from many addresses: the fourth try is refused, even the
    right password, whichever address it comes from."""
    user("alice")
    for n in range(3):
        answer = login(login_server, "alice", "wrong", f"192.0.2.{n + 1}")
        assert answer.status == 401 and answer.code == "invalid_credentials", answer
    assert_throttled(login(login_server, "alice", "right-password-123", "192.0.2.9"))
    assert_throttled(login(login_server, "ALICE ", "right-password-123", "192.0.2.10"))
    # Another account is not held up by alice's.
    user("bob")
    assert login(login_server, "bob", "right-password-123", "192.0.2.11").status == 200


def test_login_is_throttled_per_address_whatever_the_account(login_server):
    """Password spraying: one address trying many accounts is refused after five."""
    for n in range(5):
        answer = login(login_server, f"nobody{n}", "guess", "198.51.100.7")
        assert answer.status == 401, answer
    user("carol")
    assert_throttled(login(login_server, "carol", "right-password-123", "198.51.100.7"))
    # The same account from another address still logs in.
    assert login(login_server, "carol", "right-password-123", "198.51.100.8").status == 200


def test_a_client_cannot_dodge_the_address_throttle_with_x_forwarded_for(
    django_db_setup, elasticsearch_server
):
    """With no proxy configured (the default) the socket's address counts, not a header
    the client wrote."""
    with throttled_server(THROTTLE_RATE_LOGIN_ADDRESS="2/min") as port:
        for n in range(2):
            assert login(port, f"x{n}", "guess", f"203.0.113.{n}").status == 401
        assert_throttled(login(port, "x9", "guess", "203.0.113.99"))


# --- anonymous reads and commands ---------------------------------------------------


def test_anonymous_reads_are_throttled_per_address(
    django_db_setup, elasticsearch_server, read_models, staff_user
):
    with throttled_server(THROTTLE_RATE_ANON_READ="3/min") as port:
        # An up-to-date view, reported once the server is up (a report older than a few
        # sweeps counts as lag: a slow start on a busy machine would make the view
        # answer 503, not the throttle).
        project_all()
        for _ in range(3):
            assert call(port, "GET", "/api/products/search").status == 200
        assert_throttled(call(port, "GET", "/api/products/search"))
        # A signed-in user's reads are not anonymous reads.
        token = AuthToken.objects.create(user=staff_user)[1]
        answer = call(port, "GET", "/api/products/search",
                      headers={"Authorization": f"Token {token}"})
        assert answer.status == 200, answer


def test_commands_are_throttled_per_user(
    django_db_setup, elasticsearch_server, read_models, staff_user, client_for
):
    with throttled_server(THROTTLE_RATE_COMMANDS="2/min") as port:
        token = AuthToken.objects.create(user=staff_user)[1]
        headers = {"Authorization": f"Token {token}"}

        def create(n):
            return call(port, "POST", "/api/products", {
                "sku": f"THROTTLE-{n}", "name": "T", "category": "c", "price_cents": 1,
                "stock": 1,
            }, headers)

        product = create(1)
        assert product.status == 201, product
        assert create(2).status == 201
        assert_throttled(create(3))
        # Reads are not commands.
        read = call(port, "GET", f"/api/products/{product.json()['id']}", headers=headers)
        assert read.status == 200, read


# --- the consistency stream ---------------------------------------------------------


def _stream(port, max_wait_ms: int):
    """Open a stream on a position no view reaches, so it lasts until max_wait_ms."""
    token = encode_token(Position(2**62, 0))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", f"/api/consistency/stream?token={token}&views=order_summary"
                        f"&max_wait_ms={max_wait_ms}")
    return conn, conn.getresponse()


def _refusal(response):
    return Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                  response.read())


def test_opening_streams_is_throttled_per_address(django_db_setup, elasticsearch_server):
    with throttled_server(THROTTLE_RATE_STREAM="2/min") as port:
        for _ in range(2):
            conn, response = _stream(port, 1)
            assert response.status == 200
            assert b"event: end" in response.read()
            conn.close()
        conn, response = _stream(port, 1)
        assert_throttled(_refusal(response))
        conn.close()


def test_concurrent_streams_per_client_are_bounded_and_slots_come_back(
    django_db_setup, elasticsearch_server
):
    prefix = f"throttle-test-{uuid.uuid4().hex}"
    with uvicorn_server(THROTTLE_KEY_PREFIX=prefix, STREAMS_PER_CLIENT="1") as port:
        first, held = _stream(port, 60_000)
        assert held.status == 200
        # Chunked: skip chunk-size lines up to the first event.
        assert any(held.fp.readline().startswith(b"event: start") for _ in range(4))
        conn, refused = _stream(port, 60_000)
        assert_throttled(_refusal(refused), "too_many_streams")
        conn.close()
        # The client hangs up: its slot is given back.
        held.close()
        first.close()

        def opens():
            conn, response = _stream(port, 1)
            try:
                return response.status == 200 and b"event: end" in response.read()
            finally:
                conn.close()

        wait_until(opens, timeout=60, message="the closed stream's slot never came back")

        # A server that died mid-stream never gave its slot back: the count expires.
        slots = redis.Redis.from_url(settings.REDIS_URL)
        slots.set(f"{prefix}:streams:127.0.0.1", 1, ex=2)
        conn, refused = _stream(port, 1)
        assert_throttled(_refusal(refused), "too_many_streams")
        conn.close()
        wait_until(opens, timeout=60, message="a leaked slot never expired")


# --- API tokens ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server(django_db_setup, elasticsearch_server):
    with throttled_server(API_TOKEN_TTL_SECONDS="600") as port:
        yield port


def test_login_issues_an_expiring_token_stored_only_as_a_hash(token_server):
    dave = user("dave")
    answer = login(token_server, "dave", "right-password-123")
    assert answer.status == 200, answer
    token = answer.json()["token"]
    row = AuthToken.objects.get(user=dave)
    assert token not in (row.digest, row.token_key)
    assert timezone.now() < row.expiry <= timezone.now() + timedelta(seconds=600)
    ok = call(token_server, "POST", "/api/auth/logout",
              headers={"Authorization": f"Token {token}"})
    assert ok.status == 204, ok


def test_a_revoked_token_is_refused(token_server, make_product):
    product = f"/api/products/{make_product().pk}"
    user("erin")
    token = login(token_server, "erin", "right-password-123").json()["token"]
    headers = {"Authorization": f"Token {token}"}
    assert call(token_server, "GET", product, headers=headers).status == 200
    assert call(token_server, "POST", "/api/auth/logout", headers=headers).status == 204
    for method, path in (("GET", product), ("POST", "/api/auth/logout")):
        refused = call(token_server, method, path, headers=headers)
        assert refused.status == 401, refused
        assert refused.code == "authentication_failed"


def test_an_expired_token_is_refused(token_server, make_product):
    frank = user("frank")
    _, token = AuthToken.objects.create(user=frank, expiry=timedelta(seconds=-1))
    refused = call(token_server, "GET", f"/api/products/{make_product().pk}",
                   headers={"Authorization": f"Token {token}"})
    assert refused.status == 401, refused
    assert refused.code == "authentication_failed"


def test_a_request_loads_only_its_own_token_and_the_purge_removes_expired_ones(
    token_server, make_product
):
    """knox would load all of a user's tokens on every request; ours loads the one
    presented, and expired tokens go in the hourly purge."""
    from orders.tasks import purge_expired_api_tokens

    gail = user("gail")
    _, token = AuthToken.objects.create(user=gail)
    AuthToken.objects.bulk_create([  # expired logins of the same user, never presented
        AuthToken(user=gail, digest=f"{n:0128x}", token_key=f"{n:015x}"[:15],
                  expiry=timezone.now() - timedelta(seconds=1))
        for n in range(3)
    ])
    assert call(token_server, "GET", f"/api/products/{make_product().pk}",
                headers={"Authorization": f"Token {token}"}).status == 200
    assert AuthToken.objects.filter(user=gail).count() == 4  # a request touched none
    assert purge_expired_api_tokens() == 3
    assert AuthToken.objects.filter(user=gail).count() == 1
    assert call(token_server, "GET", f"/api/products/{make_product().pk}",
                headers={"Authorization": f"Token {token}"}).status == 200


def test_login_takes_a_form_post_too(token_server):
    user("gina")
    answer = call(token_server, "POST", "/api/auth/token",
                  b"username=gina&password=right-password-123",
                  {"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status == 200 and answer.json()["token"], answer


def test_logout_needs_a_token(token_server):
    refused = call(token_server, "POST", "/api/auth/logout")
    assert refused.status == 401, refused


def test_requests_racing_at_the_limit_pass_no_more_than_the_rate(django_db_setup):
    """Counting is one atomic step in Redis: of 24 requests that arrive together for a
    rate of 5, exactly 5 pass, and the refused learn when the window frees a place."""
    import threading

    from shop.web.throttles import RedisRateThrottle

    ident = uuid.uuid4().hex

    class Racing(RedisRateThrottle):
        scope, rate = "racing", "5/min"

        def get_cache_key(self, request, view):
            return f"racing-{ident}"

    start = threading.Barrier(24)
    answers = []

    def one():
        throttle = Racing()
        start.wait()
        answers.append((throttle.allow_request(None, None), throttle.wait()))

    threads = [threading.Thread(target=one) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for allowed, _ in answers if allowed) == 5, answers
    waits = [wait for allowed, wait in answers if not allowed]
    assert len(waits) == 19 and all(55 < wait <= 60 for wait in waits), waits


def _throttle(rate: str):
    from shop.web.throttles import RedisRateThrottle

    ident = uuid.uuid4().hex

    class Measured(RedisRateThrottle):
        scope = "measured"

        def get_cache_key(self, request, view):
            return f"measured-{ident}"

    Measured.rate = rate
    return Measured


def test_the_window_slides_old_requests_leave_it(django_db_setup):
    """A throttle whose window never slid would refuse a steady client for good: two
    requests a minute and a second ago and two a second ago, at 3/min, leave one place
    (the two old ones have left the window), and only one."""
    from django.conf import settings

    from shop.web import redis_clients

    throttle = _throttle("3/min")
    first = throttle()
    assert first.allow_request(None, None)
    key = f"{settings.THROTTLE_KEY_PREFIX}:{first.key}"
    redis = redis_clients.client(timeout=2, pool="throttle-test")
    seconds, micros = redis.time()
    now = seconds + micros / 1e6
    redis.delete(key)
    redis.zadd(key, {"a": now - 61, "b": now - 61, "c": now - 1, "d": now - 1})
    redis.expire(key, 60)
    assert throttle().allow_request(None, None), "old requests never left the window"
    refused = throttle()
    assert not refused.allow_request(None, None)
    assert 55 < refused.wait() <= 60  # until "c" and "d" leave
    assert redis.zcard(key) == 3


def test_the_counters_expire_with_their_window(django_db_setup):
    """Counters of clients that went away must not stay in Redis for ever."""
    from django.conf import settings

    from shop.web import redis_clients

    throttle = _throttle("3/min")
    checked = throttle()
    assert checked.allow_request(None, None)
    key = f"{settings.THROTTLE_KEY_PREFIX}:{checked.key}"
    ttl = redis_clients.client(timeout=2, pool="throttle-test").ttl(key)
    assert 0 < ttl <= 60, ttl
