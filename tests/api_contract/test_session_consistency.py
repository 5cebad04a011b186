"""Session consistency: a signed-in user reads their own writes without sending a token.

Over HTTP against a real uvicorn (shop.asgi, so the wait runs in the ASGI middleware
before Django) with no projector running unless a test runs one: the server remembers
the token of each user's latest command in Redis and the user's projected reads wait
for it; another user's reads never wait for it; a client can opt out; the memory
survives a restart of the web process and keeps the newest of racing commands.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.test import Client

from orders.models import Customer
from orders.outbox import decode_token
from readmodels import sessions
from tests.support.http import Http, api_token_for
from tests.support.readside import project_all, token_waits_listening
from tests.support.servers import uvicorn_server
from tests.support.staff import support_staff_token
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# Long enough that a read answering "reached" proves it waited for the projector.
LONG = "max_wait_ms=10000"
# Lag SLOs these tests cannot miss: a paused projector leaves the views behind, and the
# answers must come from them, never from the PostgreSQL fallback.
PATIENT = {f"SLO_SECONDS_{name}": "3600" for name in (
    "PRODUCTS_SEARCH", "ORDERS_SEARCH", "ORDER_SUMMARY", "CUSTOMER_DASHBOARD")}
# The ES dev server serves one request at a time and stalls while it saves its state
# (about a second after writes): a read allowance these tests cannot miss either, so a
# 503 here can only mean the behaviour under test went wrong.
PATIENT["READMODELS_READ_TIMEOUT_SECONDS"] = "30"


def _user(customer):
    return Customer.objects.get(pk=customer.pk).user


def _place(http: Http, product) -> tuple[str, str]:
    status, headers, body = http.call(
        "POST", "/api/orders", {"lines": [{"product_id": product.pk, "quantity": 1}]},
        {"Idempotency-Key": str(uuid.uuid4())},
    )
    assert status == 201, body
    return body["id"], headers["X-Consistency-Token"]


def _waiting() -> bool:
    return token_waits_listening(settings.READMODELS["NAMESPACE"])


def test_own_reads_wait_for_the_latest_command_with_no_token_sent(
    read_models, make_customer, make_product
):
    customer = make_customer(balance_cents=10_000)
    product = make_product(price_cents=700)
    project_all()
    with uvicorn_server(**PATIENT) as port:
        http = Http(port, api_token_for(customer))
        order_id, _ = _place(http, product)  # the projector is paused: nothing runs it
        reads = {
            "summary": f"/api/orders/{order_id}/summary?{LONG}",
            "history": f"/api/customers/{customer.pk}/orders?{LONG}",
            "dashboard": f"/api/customers/{customer.pk}/dashboard?{LONG}",
        }
        with ThreadPoolExecutor(max_workers=3) as pool:
            pending = {name: pool.submit(http.call, "GET", path) for name, path in reads.items()}
            wait_until(_waiting, timeout=60, message="the reads did not start waiting")
            waited = not any(f.done() for f in pending.values())
            project_all()
            answers = {name: f.result(timeout=120) for name, f in pending.items()}
    assert waited, "a read answered before the projector ran"
    for name, (status, headers, _) in answers.items():
        assert status == 200, (name, answers[name])
        assert headers["X-Consistency-Source"] == "session", name
        assert headers["X-Stale"] == "false", name
        assert int(headers["X-Consistency-Wait-Ms"]) >= 0, name
    assert answers["summary"][2]["total_cents"] == 700
    assert [o["id"] for o in answers["history"][2]["results"]] == [order_id]
    assert answers["dashboard"][2]["order_count"] == 1


def test_another_user_and_an_anonymous_reader_do_not_wait(
    read_models, make_customer, make_product
):
    writer, reader = make_customer(balance_cents=10_000), make_customer()
    project_all()
    with uvicorn_server(**PATIENT) as port:
        _place(Http(port, api_token_for(writer)), make_product(name="Teal Teapot"))
        for http in (Http(port, api_token_for(reader)), Http(port)):
            status, headers, body = http.call("GET", f"/api/products/search?q=teapot&{LONG}")
            assert status == 200, body
            assert headers["X-Consistency-Source"] == "none"
            assert "X-Consistency-Wait-Ms" not in headers
            assert headers["X-Stale"] == "false"
        # The writer's own search does wait for the writer's order (stock changed).
        status, headers, _ = Http(port, api_token_for(writer)).call(
            "GET", "/api/products/search?q=teapot&max_wait_ms=0")
        assert headers["X-Consistency-Source"] == "session"
        assert headers["X-Stale"] == "true"


def test_opting_out_answers_at_once_and_says_stale(read_models, make_customer, make_product):
    customer = make_customer(balance_cents=10_000)
    project_all()
    with uvicorn_server(**PATIENT) as port:
        http = Http(port, api_token_for(customer))
        _place(http, make_product())
        dashboard = f"/api/customers/{customer.pk}/dashboard"
        for path, headers in (
            (f"{dashboard}?{LONG}", {"X-Consistency-Token": "none"}),
            (f"{dashboard}?consistency=none&{LONG}", {}),
        ):
            status, got, body = http.call("GET", path, headers=headers)
            assert status == 200, body
            assert got["X-Consistency-Source"] == "none"
            assert got["X-Stale"] == "true"  # the user's order is not in it yet
            assert "X-Consistency-Wait-Ms" not in got
            assert body["order_count"] == 0
        status, _, body = http.call("GET", f"{dashboard}?consistency=later")
        assert status == 400 and body["error"]["code"] == "invalid_consistency"


def test_an_explicit_token_wins_over_the_session(read_models, make_customer, make_product):
    customer = make_customer(balance_cents=10_000)
    project_all()
    with uvicorn_server(**PATIENT) as port:
        http = Http(port, api_token_for(customer))
        order_id, first = _place(http, make_product())
        project_all()
        _place(http, make_product())  # remembered, not yet projected
        status, headers, _ = http.call(
            "GET", f"/api/orders/{order_id}/summary?max_wait_ms=0",
            headers={"X-Consistency-Token": first})
    assert status == 200
    assert headers["X-Consistency-Source"] == "request"
    assert headers["X-Stale"] == "false"  # the older token is reached; the session's is not


def test_the_remembered_token_survives_a_restart_and_follows_the_user_to_another_device(
    read_models, make_customer, make_product
):
    customer = make_customer(balance_cents=10_000)
    project_all()
    with uvicorn_server(**PATIENT) as port:
        _place(Http(port, api_token_for(customer)), make_product())
    # Another device: a browser session of the same user, on a new web process.
    browser = Client()
    browser.force_login(_user(customer))
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    with uvicorn_server(**PATIENT) as port:
        status, headers, body = Http(port).call(
            "GET", f"/api/customers/{customer.pk}/dashboard?max_wait_ms=0",
            headers={"Cookie": cookie})
        assert status == 200, body
        assert headers["X-Consistency-Source"] == "session"
        assert headers["X-Stale"] == "true"
        with ThreadPoolExecutor(max_workers=1) as pool:
            read = pool.submit(Http(port).call, "GET",
                               f"/api/customers/{customer.pk}/dashboard?{LONG}",
                               None, {"Cookie": cookie})
            wait_until(_waiting, timeout=60, message="the read did not start waiting")
            project_all()
            status, headers, body = read.result(timeout=120)
    assert status == 200, body
    assert headers["X-Consistency-Source"] == "session"
    assert headers["X-Stale"] == "false"
    assert body["order_count"] == 1


def test_staff_read_their_own_writes_for_a_customer_and_the_customer_does_not_wait(
    read_models, make_customer
):
    customer = make_customer()
    project_all()
    with uvicorn_server(**PATIENT) as port:
        staff = Http(port, support_staff_token())
        status, _, _ = staff.call("POST", f"/api/customers/{customer.pk}/top-ups",
                                  {"amount_cents": 1234})
        assert status == 200
        dashboard = f"/api/customers/{customer.pk}/dashboard?max_wait_ms=0"
        _, staff_headers, _ = staff.call("GET", dashboard)
        _, own_headers, _ = Http(port, api_token_for(customer)).call("GET", dashboard)
    assert staff_headers["X-Consistency-Source"] == "session"
    assert own_headers["X-Consistency-Source"] == "none"


def test_an_idempotent_replay_is_remembered_too(read_models, make_customer, make_product):
    customer = make_customer(balance_cents=10_000)
    product = make_product()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    order = {"lines": [{"product_id": product.pk, "quantity": 1}]}
    with uvicorn_server(**PATIENT) as port:
        http = Http(port, api_token_for(customer))
        status, first, _ = http.call("POST", "/api/orders", order, key)
        assert status == 201
        from readmodels.stores import redis_store

        redis_store.client().delete(sessions.key(_user(customer).pk))  # e.g. expired
        status, replay, _ = http.call("POST", "/api/orders", order, key)
    assert replay["Idempotent-Replayed"] == "true"
    assert sessions.remembered(_user(customer).pk) == decode_token(first["X-Consistency-Token"])


def test_racing_commands_leave_the_newest_token(read_models, make_customer, make_product):
    customer = make_customer(balance_cents=100_000)
    products = [make_product() for _ in range(8)]
    with uvicorn_server(**PATIENT) as port:
        http = Http(port, api_token_for(customer))
        with ThreadPoolExecutor(max_workers=8) as pool:
            tokens = [t for _, t in pool.map(lambda p: _place(http, p), products)]
    newest = max(decode_token(t) for t in tokens)
    assert sessions.remembered(_user(customer).pk) == newest


def test_an_older_token_never_replaces_a_newer_one(transactional_db, make_customer, make_product):
    from orders import commands

    customer = make_customer(balance_cents=100_000)
    older = commands.place_order(
        customer_id=customer.pk, lines=[commands.LineRequest(make_product().pk, 1)]).token
    newer = commands.place_order(
        customer_id=customer.pk, lines=[commands.LineRequest(make_product().pk, 1)]).token
    user_id = _user(customer).pk
    assert sessions.remember(user_id=user_id, token=newer)
    assert not sessions.remember(user_id=user_id, token=older)  # answered late
    assert sessions.remembered(user_id) == decode_token(newer)
    assert sessions.remember(user_id=user_id, token=newer) is False  # a replay of it
    ttl = sessions.redis_store.client().ttl(sessions.key(user_id))
    assert 0 < ttl <= settings.READMODELS["SESSION_TOKEN_TTL_SECONDS"]


def _legacy_token(xid: int, position: int = 0) -> str:
    """A token of the previous, signed format: what a client or the session memory may
    hold from before an upgrade or a restore (it names no cluster)."""
    import base64

    from django.core import signing

    signed = signing.Signer(salt="orders.outbox.consistency-token", algorithm="sha256").sign(
        f"ct2.{xid}.{position}")
    return base64.urlsafe_b64encode(signed.encode()).decode().rstrip("=")


def test_a_remembered_token_of_another_cluster_is_replaced_and_never_waited_for(
    read_models, make_customer, make_product
):
    """After a restore into a new cluster the old cluster's positions lie far ahead of
    every new one: a remembered old token must give way to the user's next command, or
    every session read of theirs waits its whole max_wait_ms and answers stale."""
    from orders import commands

    customer = make_customer(balance_cents=100_000)
    user_id = _user(customer).pk
    sessions.remember(user_id=user_id, token=_legacy_token(2**40))  # the old cluster's
    placed = commands.place_order(customer_id=customer.pk,
                                  lines=[commands.LineRequest(make_product().pk, 1)])
    assert sessions.remember(user_id=user_id, token=placed.token)
    assert sessions.remembered(user_id) == decode_token(placed.token)
    project_all()
    with uvicorn_server(**PATIENT) as port:
        status, headers, _ = Http(port, api_token_for(customer)).call(
            "GET", f"/api/orders/{placed.value.pk}/summary?{LONG}")
    assert status == 200
    assert headers["X-Consistency-Source"] == "session" and headers["X-Stale"] == "false"


def test_an_explicit_token_of_another_cluster_is_answered_at_once_as_stale(
    read_models, make_customer, make_product
):
    from orders import commands
    from orders.outbox import Position, encode_token

    customer = make_customer(balance_cents=100_000)
    order = commands.place_order(customer_id=customer.pk,
                                 lines=[commands.LineRequest(make_product().pk, 1)]).value
    project_all()
    elsewhere = encode_token(Position(1, 1), cluster="12345")  # a low position, elsewhere
    with uvicorn_server(**PATIENT) as port:
        http = Http(port, api_token_for(customer))
        status, headers, _ = http.call("GET", f"/api/orders/{order.pk}/summary?{LONG}",
                                       headers={"X-Consistency-Token": elsewhere})
    assert status == 200
    # Not reached: a position of another cluster says nothing of this one's.
    assert headers["X-Stale"] == "true"
    assert int(headers["X-Consistency-Wait-Ms"]) < 5000


def test_staff_writes_in_admin_are_remembered_like_api_commands(
    read_models, staff_user, make_product
):
    product = make_product()
    admin = Client()
    admin.force_login(staff_user)
    answer = admin.post("/admin/orders/product/?", {
        "action": "restock", "quantity": "3", "_selected_action": [product.pk],
    })
    assert answer.status_code == 302, answer.content
    remembered = sessions.remembered(staff_user.pk)
    assert remembered is not None
    from orders.models import OutboxMessage

    newest = OutboxMessage.objects.filter(aggregate_id=str(product.pk)).latest("position")
    assert remembered.xid == newest.xid
