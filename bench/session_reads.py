"""What a read right after a write costs, with the session's token and without (opt-out).

Against the shipped stack: with no `--api`, it starts `make run`'s own stack
(`python -m shop.devstack run`: uvicorn, worker, beat, demo data) on a database, Redis
namespace and port of its own, and stops it at the end; with `--api`, against any
running shop. A demo customer places an order, then at once reads its projected
summary, alternately with no token sent (session consistency: the read waits for the
order) and with `?consistency=none` (no wait). Prints, per mode, the median and p99 of
the server's X-Consistency-Wait-Ms, of the whole read's latency, and how often the
answer did not show the order yet; writes bench/results/session_reads.json.

    .venv/bin/python bench/session_reads.py --n 200
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Api:
    def __init__(self, base: str):
        url = urlparse(base)
        self.prefix = url.path.rstrip("/")
        self.conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
        self.auth: dict[str, str] = {}

    def call(self, method, path, body=None, headers=None):
        sent = {"Content-Type": "application/json", **self.auth, **(headers or {})}
        self.conn.request(method, self.prefix + path,
                          body=None if body is None else json.dumps(body), headers=sent)
        response = self.conn.getresponse()
        return response.status, response.headers, json.loads(response.read() or b"null")


@contextmanager
def shipped_stack(name: str = "session"):
    """`make run`'s stack on a database, namespace and port of its own; yields the API URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PORT": str(port), "READMODELS_NAMESPACE": f"bench_{name}",
           "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/shop_bench_{name}",
           "DJANGO_DEBUG": "true", "PROMETHEUS_MULTIPROC_DIR": ""}
    # One customer places 2n orders in a minute or two: lift the abuse limits, as the
    # other benchmarks do (bench/benchdb.py).
    for scope in ("LOGIN_ADDRESS", "LOGIN_ACCOUNT", "ANON_READ", "COMMANDS", "STREAM"):
        env.setdefault(f"THROTTLE_RATE_{scope}", "100000000/min")
    log = open(f"/tmp/bench-{name}-stack.log", "ab")
    stack = subprocess.Popen([sys.executable, "-m", "shop.devstack", "run"], cwd=HERE.parent,
                             env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if stack.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the stack did not start; see /tmp/bench-{name}-stack.log") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/api"
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        stack.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", help="a running shop's API (default: start the shipped stack)")
    parser.add_argument("--user", default="customer3@example.com")
    parser.add_argument("--password", default="demo")
    parser.add_argument("--n", type=int, default=200, help="reads per mode")
    args = parser.parse_args()
    if args.api:
        measure(args)
    else:
        with shipped_stack() as url:
            args.api = url
            measure(args)


def measure(args) -> None:
    api = Api(args.api)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    api.conn.request("POST", api.prefix + "/auth/token", headers=form,
                     body=f"username={args.user}&password={args.password}")
    api.auth = {"Authorization": f"Token {json.loads(api.conn.getresponse().read())['token']}"}
    staff = Api(args.api)
    api.conn.request("POST", api.prefix + "/auth/token", headers=form,
                     body="username=admin&password=admin")
    staff.auth = {"Authorization": f"Token {json.loads(api.conn.getresponse().read())['token']}"}
    customer = api.call("GET", "/me")[2]["customer_id"]
    # A stack just started is still projecting its demo data: search answers 503 until then.
    deadline = time.monotonic() + 180
    while True:
        status, _, found = api.call(
            "GET", "/products/search?in_stock=true&sort=price_asc&page_size=1")
        if status == 200 and found["results"]:
            product = found["results"][0]
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"product search never answered: {status} {found}")
        time.sleep(0.5)
    staff.call("POST", f"/products/{product['id']}/restock", {"quantity": 2 * args.n + 10},
               {"Idempotency-Key": str(uuid.uuid4())})
    staff.call("POST", f"/customers/{customer}/top-ups",
               {"amount_cents": product["price_cents"] * (2 * args.n + 10)},
               {"Idempotency-Key": str(uuid.uuid4())})
    results = {"session": [], "none": []}
    for i in range(2 * args.n):
        mode = "session" if i % 2 == 0 else "none"
        status, _, order = api.call(
            "POST", "/orders", {"lines": [{"product_id": product["id"], "quantity": 1}]},
            {"Idempotency-Key": str(uuid.uuid4())})
        assert status == 201, order
        query = "" if mode == "session" else "?consistency=none"
        started = time.perf_counter()
        status, headers, body = api.call("GET", f"/orders/{order['id']}/summary{query}")
        elapsed = (time.perf_counter() - started) * 1000
        shown = status == 200 and body.get("id") == order["id"]
        results[mode].append(
            (int(headers.get("X-Consistency-Wait-Ms") or 0), elapsed, shown,
             headers.get("X-Consistency-Source"))
        )
    print(f"{args.n} reads per mode, each right after the customer's own order")
    report = {"reads_per_mode": args.n, "modes": {}}
    for mode, rows in results.items():
        waits = [r[0] for r in rows]
        latency = [r[1] for r in rows]
        missing = sum(not r[2] for r in rows)
        sources = sorted({r[3] for r in rows})
        print(f"  {mode:8} source={','.join(sources):8} wait ms median {statistics.median(waits):.0f}"
              f" p99 {_pct(waits, 99):.0f} | read ms median {statistics.median(latency):.1f}"
              f" p99 {_pct(latency, 99):.1f} | order not shown {missing}/{len(rows)}")
        report["modes"][mode] = {
            "source": ",".join(s or "" for s in sources),
            "wait_ms_p50": statistics.median(waits), "wait_ms_p99": _pct(waits, 99),
            "read_ms_p50": round(statistics.median(latency), 1),
            "read_ms_p99": round(_pct(latency, 99), 1),
            "order_not_shown": missing, "reads": len(rows),
        }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "session_reads.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
