"""Slow request bodies against the shipped server: do searches and orders still get through?

The attack of issue 18: anonymous connections that send `POST /api/auth/token` with
`Content-Length: 100000` and then one byte of body every 2 s, forever. A connection the
server answers (503, 408, ...) is opened again at once, so the attack keeps its number
of connections. While it runs, a signed-in customer makes public searches and places
orders, one after the other, and the liveness probe is asked; the script prints what
each got, by status and error code, and what the attackers got.

With no `--api` it starts `make run`'s own stack (`python -m shop.devstack run`: uvicorn
with its 2 workers, Celery worker, beat, demo data) on a database, namespace and port
of its own, and stops it at the end; with `--api`, against any running shop (the demo
customer and admin must exist). Writes bench/results/slow_bodies.json.

    .venv/bin/python bench/slow_bodies.py --connections 100 --searches 40 --orders 28
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

from session_reads import Api, shipped_stack

HERE = Path(__file__).resolve().parent


class SlowBodies:
    """`count` connections dripping a body a byte every `interval` seconds, reopened when answered."""

    def __init__(self, host: str, port: int, prefix: str, count: int, interval: float,
                 declared: int):
        self.host, self.port, self.interval = host, port, interval
        self.request = (f"POST {prefix}/auth/token HTTP/1.1\r\nHost: {host}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{{"
                        ).encode()
        self.answers: Counter[str] = Counter()
        self.sockets = [self._open() for _ in range(count)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=10)
        sock.sendall(self.request)
        return sock

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            readable = set(select.select(self.sockets, [], [], 0)[0])
            for i, sock in enumerate(self.sockets):
                if sock in readable:
                    self.answers[_answer_of(sock)] += 1
                    sock.close()
                    self.sockets[i] = self._open()
                    continue
                try:
                    sock.sendall(b" ")
                except OSError:
                    self.answers["connection closed"] += 1
                    sock.close()
                    self.sockets[i] = self._open()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for sock in self.sockets:
            sock.close()


def _answer_of(sock: socket.socket) -> str:
    """"503 overloaded", "408 body_timeout", ... from the start of the server's answer."""
    try:
        data = sock.recv(65536)
    except OSError:
        return "connection reset"
    if not data:
        return "connection closed"
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1].decode()
    try:
        return f"{status} {json.loads(body)['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return status


def _outcome(status: int, body) -> str:
    if isinstance(body, dict) and "error" in body:
        return f"{status} {body['error']['code']}"
    return str(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", help="a running shop's API (default: start the shipped stack)")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between bytes")
    parser.add_argument("--declared", type=int, default=100_000, help="Content-Length sent")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds of attack before the shopper starts")
    parser.add_argument("--searches", type=int, default=40)
    parser.add_argument("--orders", type=int, default=28)
    parser.add_argument("--user", default="customer3@example.com")
    parser.add_argument("--password", default="demo")
    args = parser.parse_args()
    if args.api:
        measure(args)
    else:
        with shipped_stack("slow_bodies") as url:
            args.api = url
            measure(args)


def measure(args) -> None:
    shopper, staff = Api(args.api), Api(args.api)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for api, credentials in ((shopper, f"username={args.user}&password={args.password}"),
                             (staff, "username=admin&password=admin")):
        api.conn.request("POST", api.prefix + "/auth/token", headers=form, body=credentials)
        token = json.loads(api.conn.getresponse().read())["token"]
        api.auth = {"Authorization": f"Token {token}"}
    customer = shopper.call("GET", "/me")[2]["customer_id"]
    deadline = time.monotonic() + 180
    while True:  # a stack just started is still projecting its demo data
        status, _, found = shopper.call("GET", "/products/search?in_stock=true&page_size=1")
        if status == 200 and found["results"]:
            product = found["results"][0]
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"product search never answered: {status} {found}")
        time.sleep(0.5)
    staff.call("POST", f"/products/{product['id']}/restock", {"quantity": args.orders + 10},
               {"Idempotency-Key": str(uuid.uuid4())})
    staff.call("POST", f"/customers/{customer}/top-ups",
               {"amount_cents": product["price_cents"] * (args.orders + 10)},
               {"Idempotency-Key": str(uuid.uuid4())})

    url = urlparse(args.api)
    attack = SlowBodies(url.hostname, url.port or 80, shopper.prefix, args.connections,
                        args.interval, args.declared)
    time.sleep(args.settle)  # the attack's own ramp: every connection has sent some body
    # Idle all that time: the server has closed the shopper's keep-alive connection.
    shopper.conn.close()
    searches, orders, health = Counter(), Counter(), Counter()
    anonymous = Api(args.api)
    started = time.monotonic()
    for i in range(max(args.searches, args.orders)):
        if i < args.searches:
            status, _, body = anonymous.call("GET", "/products/search?q=lamp&page_size=5")
            searches[_outcome(status, body)] += 1
        if i < args.orders:
            status, _, body = shopper.call(
                "POST", "/orders", {"lines": [{"product_id": product["id"], "quantity": 1}]},
                {"Idempotency-Key": str(uuid.uuid4())})
            orders[_outcome(status, body)] += 1
        status, _, body = anonymous.call("GET", "/health")
        health[_outcome(status, body)] += 1
    shopper_seconds = time.monotonic() - started
    attack.stop()

    report = {
        "connections": args.connections, "interval_s": args.interval,
        "declared_bytes": args.declared, "shopper_seconds": round(shopper_seconds, 1),
        "searches": dict(searches), "orders": dict(orders), "health": dict(health),
        "attackers_answered": dict(attack.answers),
    }
    print(f"{args.connections} connections, a byte every {args.interval:g} s of a declared "
          f"{args.declared}-byte body; shopper ran {shopper_seconds:.1f} s")
    for name in ("searches", "orders", "health", "attackers_answered"):
        print(f"  {name:18} {dict(sorted(report[name].items()))}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "slow_bodies.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
