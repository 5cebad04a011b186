"""Commit-to-visible lag per read model at steady, open-loop write rates over HTTP.

    .venv/bin/python bench/projection_lag.py [--rates 50,100,200] [--seconds 60]
                                             [--client token|session] [--read-back-every N]

The web app (uvicorn), a Celery worker and beat run as processes; a scheduler fires
POST /api/orders at fixed instants (open loop: a slow system does not slow the load),
each for a new customer, so the expected document versions are known. Visibility is
measured as a client sees it: watcher threads read Redis (the summary exists; the
dashboard's version reached the order's) and search Elasticsearch (a terms query
finds the order). Lag = first seen - response received. Elasticsearch figures are
measured on the ES-compatible dev server, not real Elasticsearch.

`--client token` (the default) places the orders with one staff API token over
keep-alive connections. `--client session` places each as a browser would: the
customer's own session cookie and CSRF token, a new connection per request, and reads
the summary back (every Nth order) the same way.
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchdb  # noqa: E402

DATABASE, NAMESPACE = "shop_bench_lag", "benchlag"
BROKER = "redis://127.0.0.1:6379/11"
RESULTS = Path(__file__).resolve().parent / "results"
DRAIN_SECONDS = 30


VIEWS = ("order_summary", "customer_dashboard", "orders_search")


class Watch:
    def __init__(self, views=VIEWS):
        self.lock = threading.Lock()
        self.pending: dict[str, dict] = {}  # order id -> {"at", "customer", views left}
        self.lags: dict[str, list[float]] = {view: [] for view in views}

    def add(self, order_id: str, customer: int, at: float) -> None:
        with self.lock:
            self.pending[order_id] = {"at": at, "customer": customer,
                                      "left": set(self.lags)}

    def seen(self, order_id: str, model: str, now: float) -> None:
        with self.lock:
            entry = self.pending.get(order_id)
            if entry and model in entry["left"]:
                entry["left"].discard(model)
                self.lags[model].append((now - entry["at"]) * 1000)
                if not entry["left"]:
                    del self.pending[order_id]

    def waiting(self, model: str) -> list[tuple[str, int]]:
        with self.lock:
            return [(o, e["customer"]) for o, e in self.pending.items() if model in e["left"]]


def redis_watcher(watch: Watch, stop: threading.Event) -> None:
    from readmodels.stores import redis_store

    client = redis_store.client()
    while not stop.is_set():
        summary = watch.waiting("order_summary")
        dashboard = watch.waiting("customer_dashboard")
        if not summary and not dashboard:
            stop.wait(0.002)
            continue
        pipe = client.pipeline(transaction=False)
        for order_id, _ in summary:
            pipe.hget(redis_store.doc_key("order_summary", order_id, 1), "v")
        for _, customer in dashboard:
            pipe.hget(redis_store.doc_key("customer_dashboard", str(customer), 1), "v")
        values = pipe.execute()
        now = time.monotonic()
        for (order_id, _), value in zip(summary, values[: len(summary)], strict=True):
            if value is not None:
                watch.seen(order_id, "order_summary", now)
        for (order_id, _), value in zip(dashboard, values[len(summary):], strict=True):
            # A new customer (version 1) with one order (version 1): version 2 shows it.
            if value is not None and int(value) >= 2:
                watch.seen(order_id, "customer_dashboard", now)
        stop.wait(0.002)


# The dev server scans its index linearly on every search, on the same two cores as the
# system under test: polling every 5 ms took a third of a core at 100 orders/s. Every
# 25 ms costs the ES figures at most that much resolution (their targets are 250 ms
# and 1 s).
ES_POLL_SECONDS = 0.025


def es_watcher(watch: Watch, stop: threading.Event) -> None:
    from readmodels.stores import es

    while not stop.is_set():
        waiting = [o for o, _ in watch.waiting("orders_search")][:500]
        if not waiting:
            stop.wait(0.005)
            continue
        found = es.search("orders_search", query={"terms": {"order_id": waiting}},
                          size=len(waiting), _source=["order_id"])
        now = time.monotonic()
        for hit in found["hits"]["hits"]:
            watch.seen(hit["_source"]["order_id"], "orders_search", now)
        stop.wait(ES_POLL_SECONDS)


class Browser:
    """A signed-in shopper's browser: session cookie and CSRF token, a connection per request."""

    CSRF = "benchmarkcsrfsecret0123456789abc"  # an unmasked CSRF secret: 32 characters

    def __init__(self, port: int, sessions: dict[int, str]):
        self.port, self.sessions = port, sessions

    def call(self, customer: int, method: str, path: str, body: dict | None = None,
             headers: dict | None = None) -> tuple[int, dict, dict]:
        import http.client

        from django.conf import settings

        sent = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={self.sessions[customer]}; "
                          f"{settings.CSRF_COOKIE_NAME}={self.CSRF}",
                "X-CSRFToken": self.CSRF, **(headers or {})}
        payload = json.dumps(body) if body is not None else None
        if payload is not None:
            sent["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=payload, headers=sent)
            response = conn.getresponse()
            raw = response.read()
            answer = json.loads(raw) if raw else {}
            return (response.status, {k.lower(): v for k, v in response.getheaders()},
                    answer if isinstance(answer, dict) else {"items": answer})
        finally:
            conn.close()


def signed_in_sessions(customers: list[int]) -> dict[int, str]:
    """A session key per customer, signed in as its login (what a browser's cookie holds)."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from orders.models import Customer

    sessions = {}
    for customer in Customer.objects.filter(pk__in=customers).select_related("user"):
        store = SessionStore()
        store.update({SESSION_KEY: str(customer.user.pk),
                      BACKEND_SESSION_KEY: settings.AUTHENTICATION_BACKENDS[0],
                      HASH_SESSION_KEY: customer.user.get_session_auth_hash()})
        store.create()
        sessions[customer.pk] = store.session_key
    return sessions


def run_rate(rate: int, seconds: float, port: int, token: str, customers: list[int],
             products: list[int], views=VIEWS, watchers=(redis_watcher, es_watcher),
             read_back_every: int = 0, sessions: dict[int, str] | None = None) -> dict:
    """Place orders at `rate` per second over HTTP; time each view's first sight of each.

    With `sessions` (customer id -> session key) each order is placed by its customer's
    browser session (Browser), not by the staff token.

    With `read_back_every` N, every Nth order is read back at once from its projected
    summary with the command's consistency token, as a client showing a confirmation
    page would: latency and how many answers said they were stale.
    """
    from stackproc import Http

    watch = Watch(views)
    stop = threading.Event()
    watchers = [threading.Thread(target=w, args=(watch, stop)) for w in watchers]
    for w in watchers:
        w.start()
    jobs: queue.Queue = queue.Queue()
    errors, late, answered, refusals = [], [], [], []
    reads: list[tuple[float, bool, int]] = []  # (ms, stale, status)

    def client_loop():
        if sessions is None:
            staff = Http(port, token)
            http = lambda _customer, *args, **kwargs: staff.call(*args, **kwargs)  # noqa: E731
        else:
            http = Browser(port, sessions).call
        while True:
            job = jobs.get()
            if job is None:
                return
            index, scheduled = job
            late.append(max(0.0, time.monotonic() - scheduled))
            sent = time.monotonic()
            line = {"product_id": products[index % len(products)], "quantity": 1}
            order = ({"customer_id": customers[index], "lines": [line]} if sessions is None
                     else {"lines": [line]})  # a shopper orders for themself
            status, headers, body = http(customers[index], "POST", "/api/orders", order)
            answered.append(time.monotonic() - sent)
            if status != 201:
                errors.append(status)
                refusals.append(body.get("error", body))
                continue
            watch.add(body["id"], customers[index], time.monotonic())
            if read_back_every and index % read_back_every == 0:
                asked = time.perf_counter()
                got, answer_headers, _ = http(
                    customers[index], "GET", f"/api/orders/{body['id']}/summary",
                    headers={"X-Consistency-Token": headers.get("x-consistency-token", "")})
                reads.append(((time.perf_counter() - asked) * 1000,
                              answer_headers.get("x-stale") == "true", got))

    clients = [threading.Thread(target=client_loop) for _ in range(32)]
    for c in clients:
        c.start()
    total = int(rate * seconds)
    started = time.monotonic()
    for index in range(total):
        scheduled = started + index / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the open-loop schedule itself
        jobs.put((index, scheduled))
    for _ in clients:
        jobs.put(None)
    for c in clients:
        c.join()
    offered = time.monotonic() - started
    deadline = time.monotonic() + DRAIN_SECONDS
    while watch.pending and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting out the drain deadline while watchers record
    stop.set()
    for w in watchers:
        w.join()
    result = {"rate": rate, "seconds": seconds, "orders": total - len(errors),
              "achieved_rate": round((total - len(errors)) / offered, 1),
              "errors": len(errors),
              "error_statuses": {str(c): errors.count(c) for c in sorted(set(errors))},
              "refusals": refusals[:5],
              "client_start_late_p99_ms":
              round(benchdb.percentile(late, 99) * 1000, 1),
              "command_p50_ms": round(benchdb.percentile(answered, 50) * 1000, 1),
              "command_p99_ms": round(benchdb.percentile(answered, 99) * 1000, 1)}
    if read_back_every:
        # A 404 that says X-Stale is an answer too: the view's old state, in which the
        # order does not exist yet. It counts as stale, not as an error.
        ok = [r for r in reads if r[2] == 200 or (r[2] == 404 and r[1])]
        result["token_read"] = {
            "reads": len(reads), "errors": len(reads) - len(ok),
            "p50_ms": round(benchdb.percentile([r[0] for r in ok], 50), 1),
            "p99_ms": round(benchdb.percentile([r[0] for r in ok], 99), 1),
            "stale": sum(1 for r in ok if r[1]),
        }
    for model, lags in watch.lags.items():
        never_seen = sum(1 for e in watch.pending.values() if model in e["left"])
        # An order never shown took forever to show: counted so, the 99th percentile is
        # past any bound once more than 1 in 100 orders went missing (None here).
        p99_all = benchdb.percentile(lags + [math.inf] * never_seen, 99)
        result[model] = {
            "p50_ms": round(benchdb.percentile(lags, 50), 1),
            "p95_ms": round(benchdb.percentile(lags, 95), 1),
            "p99_ms": round(benchdb.percentile(lags, 99), 1),
            "p99_all_ms": round(p99_all, 1) if math.isfinite(p99_all) else None,
            "max_ms": round(max(lags), 1) if lags else None,
            "never_seen": never_seen,
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="50,100,200")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--client", choices=("token", "session"), default="token")
    parser.add_argument("--read-back-every", type=int, default=0,
                        help="read every Nth order's summary back with its token")
    args = parser.parse_args()
    benchdb.setup(DATABASE, NAMESPACE, CELERY_BROKER_URL=BROKER)
    from stackproc import Processes, staff_token

    report = {"machine": benchdb.machine(), "rates": {}, "client": args.client,
              "command": " ".join(["bench/projection_lag.py", *sys.argv[1:]]),
              "load_average": {"start": benchdb.load_average()}}
    for rate in [int(r) for r in args.rates.split(",")]:
        customers, products = benchdb.fresh_shop(int(rate * args.seconds))
        token = staff_token()
        processes = Processes({"CELERY_BROKER_URL": BROKER})
        try:
            processes.worker()
            processes.beat(f"/tmp/bench-lag-beat-{rate}")
            port = processes.web()
            print(f"rate {rate}/s for {args.seconds:.0f} s ...", flush=True)
            sessions = signed_in_sessions(customers) if args.client == "session" else None
            result = run_rate(rate, args.seconds, port, token, customers, products,
                              read_back_every=args.read_back_every, sessions=sessions)
        finally:
            processes.stop()
            import redis

            redis.Redis.from_url(BROKER).flushdb()
        report["rates"][str(rate)] = result
        print(f"  achieved {result['achieved_rate']}/s, errors {result['errors']} "
              f"{result['error_statuses']} {result['refusals']}, command p50 {result['command_p50_ms']} ms "
              f"p99 {result['command_p99_ms']} ms")
        for model in ("order_summary", "customer_dashboard", "orders_search"):
            r = result[model]
            print(f"  {model:<20} p50 {r['p50_ms']:>7} ms  p95 {r['p95_ms']:>7}  p99 "
                  f"{r['p99_ms']:>7}  max {r['max_ms']}  never seen {r['never_seen']}", flush=True)
        if "token_read" in result:
            print(f"  token reads: {result['token_read']}", flush=True)
    report["load_average"]["end"] = benchdb.load_average()
    RESULTS.mkdir(exist_ok=True)
    name = "projection_lag.json" if args.client == "token" else f"projection_lag_{args.client}.json"
    (RESULTS / name).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
