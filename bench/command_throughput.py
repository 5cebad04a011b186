"""place_order throughput, in-process and over HTTP, with the outbox on and off.

    .venv/bin/python bench/command_throughput.py [--seconds 20] [--threads 4]

Three modes, each in a fresh process on a fresh database:
- "on": the product as shipped: the outbox row is written in the command's
  transaction, wake-ups are sent and the projectors (a Celery worker and beat) run;
- "outbox_only": the outbox row and the wake-up, but no projector running, which
  isolates what the outbox write itself costs from the projectors' share of the CPU;
- "off": the benchmark-only switch BENCHMARK_ONLY_DISABLE_OUTBOX: the same commands
  without the outbox write (nothing is ever projected).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchdb  # noqa: E402

DATABASE, NAMESPACE = "shop_bench_commands", "benchcommands"
BROKER = "redis://127.0.0.1:6379/12"
RESULTS = Path(__file__).resolve().parent / "results"


def prepare() -> tuple[list[int], list[int]]:
    """A fresh shop whose 2,000 customers can pay for every order the run places."""
    from django.db import connection

    customers, products = benchdb.fresh_shop(2000)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE orders_customer SET balance_cents = 10000000000")
    return customers, products


def in_process(seconds: float, threads: int, customers, products) -> dict:
    from django.db import connection

    from orders import commands

    counts, latencies, stop = [], [], threading.Event()

    def loop(seed: int):
        rng, done, mine = random.Random(seed), 0, []
        try:
            while not stop.is_set():
                started = time.perf_counter()
                commands.place_order(customer_id=rng.choice(customers), lines=[
                    commands.LineRequest(rng.choice(products), 1)])
                mine.append((time.perf_counter() - started) * 1000)
                done += 1
        finally:
            counts.append(done)
            latencies.extend(mine)
            connection.close()

    workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    started = time.monotonic()
    for w in workers:
        w.start()
    time.sleep(seconds)  # the measurement window itself, not a wait for a condition
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - started
    return {"threads": threads, "orders_per_second": round(sum(counts) / elapsed, 1),
            "p50_ms": round(benchdb.percentile(latencies, 50), 2),
            "p99_ms": round(benchdb.percentile(latencies, 99), 2)}


def over_http(seconds: float, threads: int, customers, products, port: int,
              processes=None) -> dict:
    from stackproc import Http, cpu_seconds, staff_token

    token = staff_token()
    counts, latencies, errors, stop = [], [], [], threading.Event()

    def loop(seed: int):
        rng, client, done, mine = random.Random(seed), Http(port, token), 0, []
        while not stop.is_set():
            started = time.perf_counter()
            status, _ = client.post("/api/orders", {
                "customer_id": rng.choice(customers),
                "lines": [{"product_id": rng.choice(products), "quantity": 1}]})
            if status != 201:
                errors.append(status)
                continue
            mine.append((time.perf_counter() - started) * 1000)
            done += 1
        counts.append(done)
        latencies.extend(mine)

    roles = ("web", "worker")
    pids = {role: processes.pids(role) if processes else [] for role in roles}
    cpu_before = {role: cpu_seconds(pids[role]) for role in roles}
    projected_before = _rows_projected()
    workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    started = time.monotonic()
    for w in workers:
        w.start()
    time.sleep(seconds)  # the measurement window
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - started
    placed = max(1, sum(counts))
    # CPU per order of each process group: what the pipeline costs next to the command
    # itself, a figure that holds on a busy machine where throughput does not.
    cpu = {role: cpu_seconds(pids[role]) - cpu_before[role] for role in roles}
    cpu_ms = {f"{role}_cpu_ms_per_order": round(cpu[role] * 1000 / placed, 2)
              for role in roles}
    # A projector that backs off does less work: count what the worker did.
    projected = _rows_projected() - projected_before
    cpu_ms["rows_projected"] = projected
    cpu_ms["worker_cpu_ms_per_projected_row"] = (
        round(cpu["worker"] * 1000 / projected, 3) if projected else None)
    return {"client_threads": threads, "orders_per_second": round(sum(counts) / elapsed, 1),
            "p50_ms": round(benchdb.percentile(latencies, 50), 2),
            "p99_ms": round(benchdb.percentile(latencies, 99), 2), "errors": len(errors),
            **cpu_ms}


def _rows_projected() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(rows_projected), 0) FROM readmodels_checkpoint")
        return int(cursor.fetchone()[0])


def child(mode: str, seconds: float, threads: int, http_only: bool = False) -> None:
    outbox_off = mode == "off"
    projectors_on = mode == "on"
    extra = {"CELERY_BROKER_URL": BROKER}
    if outbox_off:
        extra["BENCHMARK_ONLY_DISABLE_OUTBOX"] = "true"
    benchdb.setup(DATABASE, NAMESPACE, **extra)
    from stackproc import Processes

    customers, products = prepare()
    processes = Processes()
    try:
        if projectors_on:
            processes.worker()
            processes.beat(f"/tmp/bench-beat-{os.getpid()}")
        result = {} if http_only else {
            "in_process_1_thread": in_process(seconds, 1, customers, products),
            f"in_process_{threads}_threads": in_process(seconds, threads, customers, products),
        }
        port = processes.web()
        result[f"http_{threads * 2}_clients"] = over_http(seconds, threads * 2, customers,
                                                          products, port, processes)
    finally:
        processes.stop()
        import redis

        redis.Redis.from_url(BROKER).flushdb()
    print(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--http-only", action="store_true",
                        help="only the HTTP figures (an A/B check of the projectors' cost)")
    parser.add_argument("--modes", default="on,outbox_only,off")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.seconds, args.threads, args.http_only)
        return 0
    report = {"machine": benchdb.machine(), "seconds": args.seconds}
    key = {"on": "outbox_on", "outbox_only": "outbox_only", "off": "outbox_off"}
    modes = args.modes.split(",")
    for mode in modes:
        print(f"outbox {mode} ...", flush=True)
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--seconds",
                              str(args.seconds), "--threads", str(args.threads),
                              *(["--http-only"] if args.http_only else [])],
                             capture_output=True, text=True, check=True)
        report[key[mode]] = json.loads(out.stdout.strip().splitlines()[-1])
        for label, figures in report[key[mode]].items():
            print(f"  {label:<24} {figures['orders_per_second']:>8.1f} orders/s  "
                  f"p50 {figures['p50_ms']} ms  p99 {figures['p99_ms']} ms  cpu ms/order: web "
                  f"{figures.get('web_cpu_ms_per_order')} worker "
                  f"{figures.get('worker_cpu_ms_per_order')} (rows projected "
                  f"{figures.get('rows_projected')}, worker cpu ms/row "
                  f"{figures.get('worker_cpu_ms_per_projected_row')})", flush=True)
    for mode in [m for m in ("on", "outbox_only") if m in modes and "off" in modes]:
        report[f"cost_{mode}"] = {
            label: round(1 - report[key[mode]][label]["orders_per_second"]
                         / report["outbox_off"][label]["orders_per_second"], 3)
            for label in report["outbox_off"]
        }
        print(f"throughput lost, {mode} vs off:", report[f"cost_{mode}"])
    # The pipeline's cost as users feel it: write throughput with the projectors
    # running, as a share of the same stack with them stopped (target >= 0.6).
    report["projectors_on_share"] = {} if not {"on", "outbox_only"} <= set(modes) else {
        label: round(report["outbox_on"][label]["orders_per_second"]
                     / report["outbox_only"][label]["orders_per_second"], 3)
        for label in report["outbox_only"]
    }
    print("throughput with projectors on, share of stopped:", report["projectors_on_share"])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "command_throughput.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
