"""Do waiting readers cost the commands anything? Command latency with and without 200
concurrent 2 s token waits, and the web server's PostgreSQL connections in each phase.

The shipped web server (uvicorn, shop.asgi, 2 workers, its default pool and admission
limits) on a database and namespace of its own. Phase A: top-ups at a fixed
concurrency. Phase B: the same top-ups while 200 clients keep a token read waiting
(max_wait_ms=2000 on a token no view reaches, so every read waits its full 2 s).
Connections are those with the web server's application_name in pg_stat_activity,
sampled continuously.

    .venv/bin/python -m shop.devstack exec -- .venv/bin/python bench/token_waits.py
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchdb  # noqa: E402
import stackproc  # noqa: E402

APP_NAME = "bench-token-waits-web"


class Client:
    """A keep-alive JSON client for one thread."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, body=None, headers=None) -> int:
        sent = {"Authorization": f"Token {self.token}", "Content-Type": "application/json",
                **(headers or {})}
        try:
            self.conn.request(method, path, body=None if body is None else json.dumps(body),
                              headers=sent)
            response = self.conn.getresponse()
            response.read()
            return response.status
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            return 0


def threads_of_children(parent: int) -> int:
    """Threads of the web server's worker processes (children of the uvicorn master)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(parent):
            total += int(fields.get("Threads", "0").strip())
    return total


class Sampler(threading.Thread):
    def __init__(self, web_pid: int):
        super().__init__(daemon=True)
        self.web_pid = web_pid
        self.peak = 0
        self.peak_threads = 0
        self.threads: list[int] = []
        self.stop = threading.Event()

    def run(self):
        import psycopg

        with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
            while not self.stop.is_set():
                count = c.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name=%s",
                                  [APP_NAME]).fetchone()[0]
                self.peak = max(self.peak, count)
                threads = threads_of_children(self.web_pid)
                self.threads.append(threads)
                self.peak_threads = max(self.peak_threads, threads)
                time.sleep(0.01)


def commands_phase(port, token, customers, n, concurrency) -> tuple[list[float], dict]:
    latencies, statuses, lock = [], {}, threading.Lock()
    clients = threading.local()

    def one(i):
        client = getattr(clients, "c", None) or Client(port, token)
        clients.c = client
        started = time.perf_counter()
        status = client.call("POST", f"/api/customers/{customers[i % len(customers)]}/top-ups",
                             {"amount_cents": 1})
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            latencies.append(elapsed)
            statuses[status] = statuses.get(status, 0) + 1

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(n)))
    return latencies, statuses


def summary(latencies: list[float]) -> dict:
    return {p: round(benchdb.percentile(latencies, q), 1)
            for p, q in (("p50", 50), ("p95", 95), ("p99", 99))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--waiters", type=int, default=200)
    parser.add_argument("--wait-ms", type=int, default=2000)
    args = parser.parse_args()

    benchdb.setup("bench_token_waits", "benchwaits")
    from django.core.management import call_command

    from orders import commands
    from orders.outbox import Position, encode_token
    from readmodels import projectors
    from readmodels.pipeline import runner

    benchdb.truncate()
    benchdb.reset_views()
    call_command("setup_readmodels", verbosity=0)
    token = stackproc.staff_token()
    customers = [commands.register_customer(email=f"w{i}@example.com", name=f"W {i}").value.pk
                 for i in range(50)]
    product = commands.create_product(sku="WAIT-1", name="Wait", description="", category="c",
                                      price_cents=100, stock=10**6).value
    commands.top_up_balance(customer_id=customers[0], amount_cents=10**6)
    order = commands.place_order(customer_id=customers[0],
                                 lines=[commands.LineRequest(product.pk, 1)]).value
    for name in projectors.PROJECTORS:
        runner.run_segment(projectors.get(name))
    # A token the views will not reach during the run: every read waits its 2 s.
    never = encode_token(Position(2**62, 0))

    procs = stackproc.Processes({"DATABASE_APPLICATION_NAME": APP_NAME})
    port = stackproc.free_port()
    web = procs.start([str(stackproc.BIN / "uvicorn"), "shop.asgi:application", "--host",
                 "127.0.0.1", "--port", str(port), "--workers", "2", "--log-level", "warning"])
    stackproc.wait_port(port)
    try:
        commands_phase(port, token, customers, 100, args.concurrency)  # warm-up
        sampler = Sampler(web.pid)
        sampler.start()
        base, base_status = commands_phase(port, token, customers, args.commands, args.concurrency)
        peak_a, threads_a = sampler.peak, sampler.peak_threads
        median_threads_a = benchdb.percentile(sampler.threads, 50)
        sampler.peak = sampler.peak_threads = 0
        sampler.threads = []

        stop = threading.Event()
        reads: dict[str, int] = {}
        lock = threading.Lock()

        def reader():
            client = Client(port, token)
            while not stop.is_set():
                status = client.call("GET", f"/api/orders/{order.pk}/summary?max_wait_ms={args.wait_ms}",
                                     headers={"X-Consistency-Token": never})
                with lock:
                    reads[str(status)] = reads.get(str(status), 0) + 1
                if status == 503:
                    time.sleep(1.0)  # Retry-After, as a well-behaved client does

        readers = [threading.Thread(target=reader, daemon=True) for _ in range(args.waiters)]
        for thread in readers:
            thread.start()
        time.sleep(1.0)  # let the waits pile up before measuring
        loaded, loaded_status = commands_phase(port, token, customers, args.commands,
                                               args.concurrency)
        peak_b, threads_b = sampler.peak, sampler.peak_threads
        median_threads_b = benchdb.percentile(sampler.threads, 50)
        stop.set()
        for thread in readers:
            thread.join(10)
        sampler.stop.set()
    finally:
        procs.stop()

    a, b = summary(base), summary(loaded)
    result = {
        "machine": benchdb.machine(),
        "note": "taken on a shared 2-core machine while other work ran",
        "commands": args.commands, "concurrency": args.concurrency, "waiters": args.waiters,
        "wait_ms": args.wait_ms,
        "without_waits": {"latency_ms": a, "statuses": base_status, "peak_connections": peak_a,
                          "peak_web_threads": threads_a, "median_web_threads": median_threads_a},
        "with_waits": {"latency_ms": b, "statuses": loaded_status, "peak_connections": peak_b,
                       "peak_web_threads": threads_b, "median_web_threads": median_threads_b,
                       "token_reads_by_status": reads},
        "p50_ratio": round(b["p50"] / a["p50"], 2) if a["p50"] else None,
        "pool_max_size_per_process": int(os.environ.get("DATABASE_POOL_MAX_SIZE", "10")),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
