"""Request bodies are bounded in size, time and number before they take any place.

Against the shipped server (uvicorn, shop.asgi) with real sockets: clients that send
their headers and then a byte a second hold no admission place, so searches and orders
from others still run; a body slower than its deadline gets a 408; a declared body
over the limit is a 413 before a byte of it is read; a chunked one is cut off at the
limit; no body is spooled to a temporary file; and a body within the limit that
arrives in many pieces is served whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.http import Http, api_token_for, auth, call
from tests.support.raw_http import (
    chunk,
    closed_by_server,
    has_answer,
    read_answer,
    send_headers,
    slow_senders,
)
from tests.support.readside import project_all
from tests.support.servers import uvicorn_process, uvicorn_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

MAX_REQUESTS, MAX_READS, MAX_RECEIVING = 4, 3, 2


def test_slow_bodies_hold_no_place_that_searches_and_orders_need(
    read_models, make_customer, make_product
):
    product = make_product(name="Sturdy Desk Lamp", stock=100)
    customer = make_customer(balance_cents=100_000)
    project_all()
    attackers = 12
    # A body deadline longer than the test: the slow senders hold on throughout.
    with uvicorn_server(WEB_MAX_REQUESTS=str(MAX_REQUESTS), WEB_MAX_READS=str(MAX_READS),
                        WEB_MAX_RECEIVING=str(MAX_RECEIVING), WEB_BODY_TIMEOUT_SECONDS="3600",
                        SLO_SECONDS_PRODUCTS_SEARCH="3600") as port, \
            slow_senders(port, attackers) as attack:
        # The server holds at most as many of them as it has places of any kind; the
        # others are refused at once.
        wait_until(lambda: attack.collect() >= attackers - max(MAX_REQUESTS, MAX_RECEIVING),
                   timeout=60, message="the slow senders beyond the bounds were not refused")
        shopper = Http(port, api_token_for(customer))
        searches = [Http(port).call("GET", "/api/products/search?q=lamp") for _ in range(8)]
        orders = [shopper.call("POST", "/api/orders",
                               {"lines": [{"product_id": product.pk, "quantity": 1}]})
                  for _ in range(4)]
        for status, _, body in searches:
            assert status == 200, (status, body)
        for status, _, body in orders:
            assert status == 201, (status, body)
        wait_until(lambda: attack.collect() >= attackers - MAX_RECEIVING, timeout=60,
                   message="the slow senders beyond WEB_MAX_RECEIVING were not refused")
        refused = list(attack.answers.values())

    # Only WEB_MAX_RECEIVING were still receiving; every other was told to come back.
    assert len(refused) == attackers - MAX_RECEIVING
    for answer in refused:
        assert answer.status == 503 and answer.code == "overloaded", answer
        assert answer.headers["retry-after"].isdigit()


@pytest.mark.parametrize("sending", ["a byte a second", "nothing after the headers"])
def test_a_body_slower_than_its_deadline_gets_408_and_the_connection_closes(sending):
    with uvicorn_server(WEB_BODY_TIMEOUT_SECONDS="1") as port:
        if sending == "nothing after the headers":
            sock = send_headers(port, "POST", "/api/auth/token",
                                {"Content-Type": "application/json", "Content-Length": "100"})
            with sock:
                answer = read_answer(sock)
                closed = closed_by_server(sock)
        else:
            with slow_senders(port, 1) as slow:
                wait_until(lambda: slow.collect(), timeout=60,
                           message="the slow body was never answered")
                answer = slow.answers[0]
                closed = closed_by_server(slow.sockets[0])
    assert answer.status == 408, answer
    assert answer.code == "body_timeout"
    assert answer.headers["connection"] == "close"
    assert closed


@pytest.mark.parametrize("expect_continue", [True, False])
def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(
    server, settings, expect_continue
):
    declared = 100 * 1024 * 1024
    headers = {"Content-Type": "application/json", "Content-Length": str(declared)}
    if expect_continue:
        # The client waits for the server's go-ahead: the refusal must come instead.
        headers["Expect"] = "100-continue"
    with send_headers(server, "POST", "/api/orders", headers,
                      first=b"" if expect_continue else b'{"lines": [') as sock:
        answer = read_answer(sock)
    assert answer.status == 413, answer
    assert answer.code == "request_too_large"
    assert str(settings.WEB_MAX_BODY_BYTES) in answer.json()["error"]["message"]


def _files_under(pid: int, directory: Path) -> list[str]:
    """The files under `directory` the process has open (a spooled body among them)."""
    opened = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith(str(directory)):
            opened.append(target)
    return opened


def test_a_chunked_body_is_cut_off_at_the_limit_and_never_spooled_to_disk(settings, tmp_path):
    # More than the limit, and more than Django spooled to disk before the fix (2.5 MB).
    piece = b" " * 65536
    pieces = 3 * 1024 * 1024 // len(piece)
    with uvicorn_process(TMPDIR=str(tmp_path)) as (port, pid):
        sock = send_headers(port, "POST", "/api/orders",
                            {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                            first=chunk(b'{"lines": ['))
        with sock:
            for _ in range(pieces):
                sock.sendall(chunk(piece))
            # The last chunk is never sent: the body is unfinished.
            spooled = wait_until(lambda: _files_under(pid, tmp_path) or has_answer(sock),
                                 timeout=60, message="no answer to an unfinished chunked body")
            assert spooled is True, f"the body was spooled to disk: {spooled}"
            answer = read_answer(sock)
    assert answer.status == 413, answer
    assert answer.code == "request_too_large"
    assert settings.FILE_UPLOAD_MAX_MEMORY_SIZE >= settings.WEB_MAX_BODY_BYTES



def test_a_body_within_the_limit_arriving_in_many_pieces_is_served(
    server, make_customer, make_product
):
    # Well over what the server buffers before the app reads (64 KB), so the body is
    # received in many messages, holding a receiving place, and handed on whole.
    product = make_product(stock=10)
    customer = make_customer(balance_cents=100_000)
    padding = b" " * (512 * 1024)
    body = b'{"lines": [{"product_id": %d, "quantity": 1}]' % product.pk + padding + b"}"
    answer = call(server, "POST", "/api/orders", body,
                  {**auth(customer.user), "Content-Type": "application/json"})
    assert answer.status == 201, answer
    assert answer.json()["total_cents"] == product.price_cents
