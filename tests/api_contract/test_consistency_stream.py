"""The live consistency stream, with a real HTTP client against a real ASGI server process."""

import http.client
import json
import time

import pytest

from orders import commands
from tests.support.readside import project_all
from tests.support.servers import uvicorn_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, elasticsearch_server):
    """uvicorn serving shop.asgi on the test database and this run's namespace."""
    with uvicorn_server() as port:
        yield port


def _events(response):
    """Parse server-sent events as they arrive: yield (name, data, monotonic time)."""
    name, data = None, None
    while True:
        line = response.fp.readline()
        if not line:
            return
        line = line.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and name:
            yield name, data, time.monotonic()
            name, data = None, None


def _open(port, query):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("GET", f"/api/consistency/stream?{query}")
    return conn, conn.getresponse()


def test_stream_says_when_each_view_caught_up(
    asgi_server, read_models, make_customer, make_product
):
    customer = make_customer(balance_cents=10_000)
    order = commands.place_order(
        customer_id=customer.pk, lines=[commands.LineRequest(make_product().pk, 1)]
    )
    conn, response = _open(
        asgi_server, f"token={order.token}&views=order_summary,customer_dashboard&max_wait_ms=60000"
    )
    assert response.status == 200
    assert response.getheader("Content-Type").startswith("text/event-stream")
    events = _events(response)
    name, data, _ = next(events)
    assert name == "start" and data["views"] == ["order_summary", "customer_dashboard"]

    # Nothing is projected yet, so nothing can be announced; now project.
    projected_at = time.monotonic()
    project_all()
    rest = list(events)
    conn.close()
    caught_up = {d["view"] for n, d, _ in rest if n == "caught_up"}
    assert caught_up == {"order_summary", "customer_dashboard"}
    assert all(t >= projected_at for n, _, t in rest if n == "caught_up")
    assert rest[-1][0] == "end"
    assert "timeout" not in [n for n, _, _ in rest]


def test_stream_times_out_and_closes_when_a_view_does_not_catch_up(
    asgi_server, read_models, make_customer
):
    customer = make_customer()
    project_all()
    later = commands.top_up_balance(customer_id=customer.pk, amount_cents=100)
    started = time.monotonic()
    conn, response = _open(asgi_server, f"token={later.token}&views=customer_dashboard&max_wait_ms=500")
    names = [(n, d) for n, d, _ in _events(response)]
    conn.close()
    assert [n for n, _ in names] == ["start", "timeout", "end"]
    assert names[1][1]["views"] == ["customer_dashboard"]
    assert time.monotonic() - started >= 0.5


def test_stream_refuses_bad_requests(asgi_server):
    from orders.outbox import Position, encode_token

    token = encode_token(Position(1, 1))
    for query, code in [
        ("token=nope&views=order_summary", "invalid_consistency_token"),
        (f"token={token}&views=nothing", "invalid_views"),
        (f"token={token}&views=order_summary&max_wait_ms=-5", "invalid_max_wait"),
    ]:
        conn, response = _open(asgi_server, query)
        body = json.loads(response.read())
        conn.close()
        assert response.status == 400
        assert body["error"]["code"] == code
