"""The lag-window demo: what a client sees between a commit and the moment a view shows it.

Plays the story over HTTP, as a client would, against a running `make run` (or starts
its own stack when BASE_URL does not answer), and prints a timeline in milliseconds:

  place an order; read the projected summary and history at once (the window: missing
  or old, and the headers say so); read the strong endpoint (present); read again with
  the consistency token (present, after a measured wait); watch the live consistency
  stream; pay and read the dashboard balance without and with the token.

    make demo                      # or: .venv/bin/python bench/lag_window_demo.py
    BASE_URL=http://host:8000 make demo
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
BASE_URL = os.environ.get("BASE_URL", f"http://127.0.0.1:{os.environ.get('PORT', '8000')}")
T0 = time.monotonic()


def ms() -> str:
    return f"{(time.monotonic() - T0) * 1000:9.1f} ms"


def say(step: str, detail: str = "") -> None:
    print(f"{ms()}  {step:<44} {detail}", flush=True)


class Client:
    def __init__(self, base: str, token: str | None = None):
        self.url = urlparse(base)
        self.token = token

    def call(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(self.url.hostname, self.url.port or 80, timeout=30)
        all_headers = {"Accept": "application/json", **(headers or {})}
        if self.token:
            all_headers["Authorization"] = f"Token {self.token}"
        payload = None
        if body is not None:
            payload = json.dumps(body)
            all_headers["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
        conn.close()
        data = json.loads(raw) if raw and raw[:1] in b"{[" else None
        return response.status, dict(response.getheaders()), data


def freshness(headers: dict) -> str:
    keys = ["X-Consistency", "X-Stale", "X-Read-Model-Lag-Ms", "X-Consistency-Wait-Ms"]
    return "  ".join(f"{k.removeprefix('X-')}={headers[k]}" for k in keys if k in headers)


def answers(base: str) -> bool:
    url = urlparse(base)
    try:
        with socket.create_connection((url.hostname, url.port or 80), timeout=0.5):
            return True
    except OSError:
        return False


def start_stack() -> subprocess.Popen:
    print("No shop answers at", BASE_URL, "- starting one (make run) for the demo...")
    process = subprocess.Popen(
        [sys.executable, "-m", "shop.devstack", "run"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not answers(BASE_URL):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the stack did not start; try `make run` yourself")
        time.sleep(0.5)
    return process


def stream(client: Client, token: str, views: str, out: list) -> None:
    conn = http.client.HTTPConnection(client.url.hostname, client.url.port or 80, timeout=30)
    conn.request("GET", f"/api/consistency/stream?token={token}&views={views}&max_wait_ms=10000")
    response = conn.getresponse()
    name = None
    for raw in response:
        line = raw.decode().strip()
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            data = json.loads(line[6:])
            out.append((ms(), name, data))
            say(f"  stream: {name}", json.dumps(data))
            if name in ("end", "error"):
                break
    conn.close()


def main() -> int:
    own = None if answers(BASE_URL) else start_stack()
    try:
        anonymous = Client(BASE_URL)
        status, _, data = anonymous.call(
            "POST", "/api/auth/token", headers={"Content-Type": "application/json"},
            body={"username": os.environ.get("DEMO_USER", "admin"),
                  "password": os.environ.get("DEMO_PASSWORD", "admin")},
        )
        if status != 200:
            raise SystemExit(f"cannot log in as the demo admin: {status} {data}")
        api = Client(BASE_URL, data["token"])
        tag = uuid.uuid4().hex[:8]
        _, _, customer = api.call(
            "POST", "/api/customers", {"email": f"demo-{tag}@example.com", "name": f"Demo {tag}"}
        )
        api.call("POST", f"/api/customers/{customer['id']}/top-ups", {"amount_cents": 50_000})
        _, _, product = api.call(
            "POST", "/api/products",
            {"sku": f"DEMO-{tag}", "name": f"Demo kettle {tag}", "category": "demo",
             "price_cents": 2_500, "stock": 10},
        )
        print(f"\nTimeline (customer {customer['id']}, product {product['id']}):\n")
        global T0
        T0 = time.monotonic()

        status, headers, order = api.call(
            "POST", "/api/orders",
            {"customer_id": customer["id"], "lines": [{"product_id": product["id"], "quantity": 2}]},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        token = headers["X-Consistency-Token"]
        say("POST /api/orders", f"{status}  order {order['id'][:8]}  token {token}")

        results = {}

        def read(name, path, extra=None):
            results[name] = api.call("GET", path, headers=extra)

        reads = [
            threading.Thread(target=read, args=("summary", f"/api/orders/{order['id']}/summary")),
            threading.Thread(target=read, args=("history", f"/api/customers/{customer['id']}/orders")),
        ]
        for t in reads:
            t.start()
        for t in reads:
            t.join()
        s_status, s_headers, _ = results["summary"]
        h_status, h_headers, history = results["history"]
        in_history = bool(history) and any(
            o["order_id"] == order["id"] for o in history.get("results", [])
        )
        say("GET summary, no token (at once)",
            f"{s_status} {'present' if s_status == 200 else 'missing'}  {freshness(s_headers)}")
        say("GET history, no token (at once)",
            f"{h_status} {'present' if in_history else 'missing'}  {freshness(h_headers)}")

        status, headers, strong = api.call("GET", f"/api/orders/{order['id']}")
        say("GET /api/orders/{id} (strong)", f"{status} status={strong['status']}  {freshness(headers)}")

        status, headers, summary = api.call(
            "GET", f"/api/orders/{order['id']}/summary", headers={"X-Consistency-Token": token}
        )
        say("GET summary with token", f"{status} status={summary.get('status')}  {freshness(headers)}")
        status, headers, history = api.call(
            "GET", f"/api/customers/{customer['id']}/orders", headers={"X-Consistency-Token": token}
        )
        say("GET history with token",
            f"{status} orders={history.get('count')}  {freshness(headers)}")

        status, _, dash_before = api.call("GET", f"/api/customers/{customer['id']}/dashboard")
        status, headers, paid = api.call("POST", f"/api/orders/{order['id']}/pay")
        pay_token = headers["X-Consistency-Token"]
        say("POST /api/orders/{id}/pay", f"{status} status={paid['status']}  token {pay_token}")
        events: list = []
        watcher = threading.Thread(
            target=stream, args=(api, pay_token, "order_summary,customer_dashboard,orders_search",
                                 events)
        )
        watcher.start()
        status, headers, dash = api.call("GET", f"/api/customers/{customer['id']}/dashboard")
        say("GET dashboard, no token", f"balance={dash.get('balance_cents')}  {freshness(headers)}")
        status, headers, dash = api.call(
            "GET", f"/api/customers/{customer['id']}/dashboard",
            headers={"X-Consistency-Token": pay_token},
        )
        say("GET dashboard with token", f"balance={dash.get('balance_cents')}  {freshness(headers)}")
        watcher.join(15)
        print(
            f"\nBalance before paying: {dash_before.get('balance_cents')} cents; "
            f"after, read with the token: {dash.get('balance_cents')} cents."
        )
        return 0
    finally:
        if own is not None:
            os.killpg(own.pid, signal.SIGINT)
            own.wait(30)


if __name__ == "__main__":
    sys.exit(main())
