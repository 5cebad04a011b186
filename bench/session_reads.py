"""What a read right after a write costs, with the session's token and without (opt-out).

Against a running shop (`make run`, or any URL): a demo customer places an order, then
at once reads its projected summary, alternately with no token sent (session
consistency: the read waits for the order) and with `?consistency=none` (no wait).
Prints, per mode, the median and p99 of the server's X-Consistency-Wait-Ms, of the
whole read's latency, and how often the answer did not show the order yet.

    .venv/bin/python bench/session_reads.py --api http://127.0.0.1:8000/api --n 200
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
import uuid
from urllib.parse import urlparse


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="http://127.0.0.1:8000/api")
    parser.add_argument("--user", default="customer3@example.com")
    parser.add_argument("--password", default="demo")
    parser.add_argument("--n", type=int, default=200, help="reads per mode")
    args = parser.parse_args()
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
    product = api.call("GET", "/products/search?in_stock=true&sort=price_asc&page_size=1")[2][
        "results"][0]
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
    print(f"{args.n} reads per mode, each right after the customer's own order (busy machine)")
    for mode, rows in results.items():
        waits = [r[0] for r in rows]
        latency = [r[1] for r in rows]
        missing = sum(not r[2] for r in rows)
        sources = sorted({r[3] for r in rows})
        print(f"  {mode:8} source={','.join(sources):8} wait ms median {statistics.median(waits):.0f}"
              f" p99 {_pct(waits, 99):.0f} | read ms median {statistics.median(latency):.1f}"
              f" p99 {_pct(latency, 99):.1f} | order not shown {missing}/{len(rows)}")


if __name__ == "__main__":
    main()
