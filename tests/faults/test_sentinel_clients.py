"""The shop's Redis clients through Sentinel (shop/web/redis_clients.py), on a topology of
the test's own: they follow a failover to the promoted replica, keep today's bounded
pool that waits for a free connection, and the readiness check and the broker go
through the sentinels too.

The failover here is Sentinel's own (SENTINEL FAILOVER): it promotes the replica and
demotes the primary at once, closing the connections clients had to it, so the test
does not wait out the detection of a dead primary (tests/faults/test_sentinel_failover.py
kills it for real).
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import redis

from readmodels.stores import redis_store
from shop.web import redis_clients
from tests.support.http import call
from tests.support.ports import free_port
from tests.support.sentinels import MASTER, sentinel_topology
from tests.support.servers import uvicorn_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults


@pytest.fixture
def topology(settings):
    """A primary, a replica and three sentinels; this process's clients go through them."""
    with sentinel_topology() as topology:
        settings.REDIS_SENTINELS = topology.addresses
        settings.REDIS_SENTINEL_MASTER = MASTER
        yield topology


def _fail_over(topology) -> None:
    topology.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", MASTER)
    topology.wait_for_promotion(60)
    # A forced failover does not stop the old primary: until the sentinels make it a
    # replica (and close its clients' connections), a client still connected to it
    # writes there, and those writes are lost when it resyncs. A client cannot tell.
    wait_until(lambda: topology.role(topology.primary) == "slave", 60,
               message="the sentinels did not demote the old primary")


def _until_it_lands(write) -> list[Exception]:
    """Call `write` until it succeeds; return what the calls before it raised."""
    failures = []
    while True:
        try:
            write()
            return failures
        except redis.RedisError as exc:
            failures.append(exc)
            assert len(failures) < 50, failures[-3:]


def test_the_sync_client_follows_a_failover_to_the_promoted_replica(topology):
    client = redis_store.client()
    client.set("where", "before")
    assert topology.primary.client().get("where") == b"before"

    _fail_over(topology)
    failures = _until_it_lands(lambda: client.set("where", "after"))

    # A call on a connection to the old primary fails as a lost connection does (the
    # store is unavailable for that call, never a document's fault); the next reaches
    # the new primary.
    assert all(redis_store.unavailable(exc) is not None for exc in failures), failures
    assert len(failures) <= 1, failures
    assert topology.replica.client().get("where") == b"after"


def test_the_asyncio_client_and_its_subscription_follow_a_failover(topology):
    async def scenario():
        client = redis_clients.async_client(timeout=1, client_name="failover-test")
        try:
            await client.set("where", "before")

            await asyncio.to_thread(_fail_over, topology)
            failures = []
            while True:
                try:
                    await client.set("where", "after")
                    break
                except redis.RedisError as exc:
                    failures.append(exc)
                    assert len(failures) < 50, failures[-3:]
            # A new subscription lands on the new primary and hears what is published there.
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe("announcements")
            topology.replica.client().publish("announcements", "hello")
            message = None
            for _ in range(100):
                message = await pubsub.get_message(timeout=0.1)
                if message:
                    break
            await pubsub.aclose()
            return failures, message
        finally:
            await redis_clients.aclose(client)

    failures, message = asyncio.run(scenario())
    assert all(isinstance(exc, redis.ConnectionError) for exc in failures), failures
    assert len(failures) <= 1, failures
    assert topology.replica.client().get("where") == b"after"
    assert message and message["data"] == b"hello"


def test_a_sentinel_client_s_pool_is_bounded_and_waits_for_a_free_connection(
    topology, settings
):
    settings.REDIS_MAX_CONNECTIONS = 2
    settings.REDIS_POOL_TIMEOUT_SECONDS = 30
    client = redis_clients.client(timeout=5, pool="bounded-test")
    pool = client.connection_pool
    held = [pool.get_connection(), pool.get_connection()]
    outcome = {}

    def ping():
        try:
            outcome["answer"] = client.ping()
        except redis.RedisError as exc:
            outcome["error"] = exc

    waiter = threading.Thread(target=ping, daemon=True)
    waiter.start()
    # It waits for a connection instead of failing at once (a plain Sentinel pool says
    # "Too many connections" here)...
    wait_until(lambda: "error" in outcome or pool.pool.not_empty._waiters, 10)
    assert outcome == {}, outcome
    # ... and gets the first one given back.
    pool.release(held.pop())
    waiter.join(30)
    assert outcome == {"answer": True}, outcome
    assert len(pool._connections) == 2, "more connections than REDIS_MAX_CONNECTIONS"

    # Past the pool timeout it gives up: the store counts as unavailable.
    settings.REDIS_POOL_TIMEOUT_SECONDS = 0.2
    client = redis_clients.client(timeout=5, pool="bounded-test")
    held = [client.connection_pool.get_connection() for _ in range(2)]
    with pytest.raises(redis.ConnectionError, match="No connection available"):
        client.ping()
    for connection in held:
        client.connection_pool.release(connection)


def test_readiness_and_the_broker_go_through_the_sentinels(topology, django_db_setup):
    # REDIS_URL names a port nothing listens on: with the sentinels set, only its database
    # number is used, for the views and for the broker alike.
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with uvicorn_server(REDIS_URL=nowhere, **topology.env()) as port:
        answer = call(port, "GET", "/api/health/ready")
    assert answer.status == 200, answer.body
    checks = answer.json()["checks"]
    assert checks["redis"]["status"] == checks["broker"]["status"] == "ok", checks
