"""Every store call on a read path ends by the request's deadline, whatever the store does.

The stores are replaced by a socket that accepts connections and never answers (the
worst case: no error, no reset, nothing), for a real uvicorn process whose fixed store
timeout is a minute. A projected read must still answer by its max_wait_ms plus the
read allowance (falling back or saying 503), and the consistency stream must end. The
HTTP client gives up after 30 s: a read that waits for the store's timeout, or a
stream that never ends, fails the test instead of hanging it.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from contextlib import contextmanager

import pytest
from django.conf import settings

from orders import commands
from tests.support.http import Http, api_token_for
from tests.support.readside import project_all
from tests.support.servers import uvicorn_server

pytestmark = pytest.mark.django_db(transaction=True)

CLIENT_TIMEOUT = 30


@contextmanager
def silent_socket():
    """A TCP server that accepts every connection and never sends a byte; yields its URL host:port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(10)
        for conn in accepted:
            conn.close()
        listener.close()


def _stream(port: int, query: str) -> list[str]:
    """The stream's event names until it closes (a socket timeout fails the test)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
    try:
        conn.request("GET", f"/api/consistency/stream?{query}")
        response = conn.getresponse()
        if response.status != 200:
            return [f"status {response.status}: {response.read().decode()}"]
        return [line[7:] for line in response.read().decode().splitlines()
                if line.startswith("event: ")]
    finally:
        conn.close()


@pytest.fixture
def paid_order(read_models, make_customer, make_product):
    customer = make_customer(balance_cents=10_000)
    order = commands.place_order(
        customer_id=customer.pk, lines=[commands.LineRequest(make_product().pk, 1)]).value
    project_all()
    paid = commands.pay_order(order_id=order.pk)
    return customer, order, paid


def test_reads_and_the_stream_end_when_redis_never_answers(paid_order):
    customer, order, paid = paid_order
    with silent_socket() as silent, uvicorn_server(
        REDIS_URL=f"redis://{silent}/0",
        # Commands still reach the real broker; only the read side's Redis is silent.
        CELERY_BROKER_URL_TEST=settings.CELERY_BROKER_URL,
        READMODELS_STORE_TIMEOUT_SECONDS="60",
        # The shipped read allowance (the suite's default is longer: see settings_test).
        READMODELS_READ_TIMEOUT_SECONDS="1",
    ) as port:
        client = Http(port, api_token_for(customer))
        for max_wait_ms in (0, 2000):
            status, headers, body = client.call(
                "GET", f"/api/orders/{order.pk}/summary?max_wait_ms={max_wait_ms}",
                headers={"X-Consistency-Token": paid.token}, timeout=CLIENT_TIMEOUT)
            # The view's store did not answer in time: the summary comes from PostgreSQL.
            assert status == 200, body
            assert headers["X-Consistency"] == "strong-fallback"
            assert body["status"] == "paid"
        events = _stream(port, f"token={paid.token}&views=order_summary&max_wait_ms=2000")
        assert events[-1] in ("error", "end"), events
        assert "caught_up" not in events


def test_a_search_ends_when_elasticsearch_never_answers(paid_order):
    customer, order, paid = paid_order
    with silent_socket() as silent, uvicorn_server(
        ELASTICSEARCH_URL=f"http://{silent}",
        READMODELS_STORE_TIMEOUT_SECONDS="60",
        # The shipped read allowance (the suite's default is longer: see settings_test).
        READMODELS_READ_TIMEOUT_SECONDS="1",
    ) as port:
        client = Http(port)
        for query in ("q=Product", "q=Product&max_wait_ms=0"):
            status, headers, body = client.call(
                "GET", f"/api/products/search?{query}", timeout=CLIENT_TIMEOUT)
            assert status == 503, body
            assert body["error"]["code"] == "read_model_unavailable"
            assert headers["Retry-After"]


def test_max_wait_ms_in_other_digits_is_a_400_everywhere(paid_order):
    customer, order, paid = paid_order
    with uvicorn_server() as port:
        client = Http(port, api_token_for(customer))
        # "²" is a digit to str.isdigit(), but no number to int().
        status, _, body = client.call(
            "GET", f"/api/orders/{order.pk}/summary?max_wait_ms=%C2%B2",
            headers={"X-Consistency-Token": paid.token}, timeout=CLIENT_TIMEOUT)
        assert status == 400 and body["error"]["code"] == "invalid_max_wait", body
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
        conn.request("GET", f"/api/consistency/stream?token={paid.token}"
                            "&views=order_summary&max_wait_ms=%C2%B2")
        response = conn.getresponse()
        body = json.loads(response.read())
        conn.close()
        assert response.status == 400 and body["error"]["code"] == "invalid_max_wait", body
