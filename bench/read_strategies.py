"""Read strategies side by side: strong reads from PostgreSQL vs projected reads.

    .venv/bin/python bench/read_strategies.py [--sizes 10000,100000] [--reads 2000]

For a customer's dashboard (balance, open orders, lifetime spend, 20 latest orders)
and order history (20 newest orders with their lines):
  (a) strong: computed from the write model with joins and aggregates (PostgreSQL);
  (b) projected: one Redis read of the dashboard document; the history from
      Elasticsearch (dev server, so only at sizes it can serve; labelled);
  (c) projected with a token right after a write: a top-up through the command, then
      the dashboard read that waits for the token (a real Celery worker projects).
Latency is measured in-process around the read function, p50 and p99 over random
customers, on the same machine in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchdb  # noqa: E402

DATABASE, NAMESPACE = "shop_bench_reads", "benchreads"
RESULTS = Path(__file__).resolve().parent / "results"
BROKER = "redis://127.0.0.1:6379/13"
ES_MAX_SIZE = 10_000  # the dev server scans linearly: beyond this its latency means nothing


def strong_dashboard(customer_id: int) -> dict:
    from readmodels import projectors

    return projectors.get("customer_dashboard").load({str(customer_id)})[0].body


def strong_history(customer_id: int) -> list:
    from django.db.models import Prefetch

    from orders.models import Order, OrderLine

    return [
        (o.pk, o.status, o.total_cents, [(line.product_name, line.quantity) for line in o.lines.all()])
        for o in Order.objects.filter(customer_id=customer_id)
        .order_by("-created_at", "-id")
        .prefetch_related(Prefetch("lines", queryset=OrderLine.objects.order_by("id")))[:20]
    ]


def projected_dashboard(customer_id: int) -> dict:
    from readmodels import queries

    return queries.customer_dashboard(customer_id)[1]


def projected_history(customer_id: int) -> dict:
    from readmodels import queries

    return queries.customer_orders(customer_id=customer_id, status=None, page_size=20,
                                   search_after=None)


def timed(function, customers: list[int], reads: int) -> dict:
    rng = random.Random(7)
    samples = []
    for _ in range(reads):
        customer = rng.choice(customers)
        started = time.perf_counter()
        function(customer)
        samples.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(benchdb.percentile(samples, 50), 3),
            "p99_ms": round(benchdb.percentile(samples, 99), 3), "reads": reads}


def wait_in_this_thread(projector: str, target, deadline: float):
    """Wait in this thread until the read model covers `target` or `deadline` passes.

    The in-process read strategy measured here; requests wait with
    progress.Waiting.wait_for instead, which holds no thread and shares one subscription.
    """
    from readmodels.pipeline.progress import channel, state
    from readmodels.stores import StoreUnavailable, redis_store

    current = state(projector)
    if current.covers(target) or time.monotonic() >= deadline:
        return current.covers(target), current
    pubsub = redis_store.client().pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(channel(projector))
        # Re-check after subscribing: an advance between the first check and the
        # subscription would otherwise be missed until the next one.
        current = state(projector)
        while not current.covers(target):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            pubsub.get_message(timeout=min(remaining, 0.25))
            current = state(projector)
        return current.covers(target), current
    except redis_store.CONNECTION_ERRORS as exc:
        raise StoreUnavailable(f"Redis: {exc}") from exc
    finally:
        try:
            pubsub.close()
        except redis_store.CONNECTION_ERRORS:
            pass


def token_reads(customers: list[int], reads: int) -> dict:
    from orders import commands

    rng = random.Random(11)
    samples, stale = [], 0
    for _ in range(reads):
        customer = rng.choice(customers)
        result = commands.top_up_balance(customer_id=customer, amount_cents=1)
        started = time.perf_counter()
        reached, _ = wait_in_this_thread("customer_dashboard", result.position,
                                         time.monotonic() + 2.0)
        projected_dashboard(customer)
        samples.append((time.perf_counter() - started) * 1000)
        stale += 0 if reached else 1
    return {"p50_ms": round(benchdb.percentile(samples, 50), 3),
            "p99_ms": round(benchdb.percentile(samples, 99), 3), "reads": reads, "stale": stale}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--token-reads", type=int, default=300)
    args = parser.parse_args()
    # The bench's own broker database, so that no other worker takes its tasks.
    benchdb.setup(DATABASE, NAMESPACE, CELERY_BROKER_URL=BROKER)
    from readmodels import projectors
    from readmodels.pipeline import runner

    report = {"machine": benchdb.machine(), "sizes": {}}
    for size in [int(s) for s in args.sizes.split(",")]:
        print(f"\n== {size:,} orders ==", flush=True)
        benchdb.truncate()
        benchdb.reset_views()
        customer_count = max(50, size // 50)
        benchdb.bulk_shop(customers=customer_count, products=500, orders=size)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO orders_outboxmessage (aggregate_type, aggregate_id, aggregate_version, "
                "event_type, partition_key, payload, request_id) SELECT 'customer', id::text, 1, "
                "'CustomerRegistered', id::text, '{}'::jsonb, '' FROM orders_customer"
            )
            cursor.execute("ANALYZE")
            cursor.execute("SELECT id FROM orders_customer")
            customers = [row[0] for row in cursor.fetchall()]
        names = ["customer_dashboard"] + (["orders_search"] if size <= ES_MAX_SIZE else [])
        for name in names:
            while not runner.run_segment(projectors.get(name), time_budget=3600,
                                         ignore_backoff=True).complete:
                pass
        entry = {
            "strong_dashboard": timed(strong_dashboard, customers, args.reads),
            "projected_dashboard_redis": timed(projected_dashboard, customers, args.reads),
            "strong_history": timed(strong_history, customers, args.reads),
        }
        if size <= ES_MAX_SIZE:
            entry["projected_history_es_dev_server"] = timed(projected_history, customers,
                                                             min(args.reads, 500))
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "shop", "worker",
             "--pool=threads", "--concurrency=2", "--loglevel=WARNING", "--without-mingle",
             "--without-gossip"],
            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            from shop.celery import app

            deadline = time.monotonic() + 60
            while not app.control.ping(timeout=0.5):
                if time.monotonic() > deadline:
                    raise SystemExit("the benchmark's Celery worker did not start")
            entry["projected_dashboard_with_token_after_write"] = token_reads(
                customers, args.token_reads
            )
        finally:
            worker.terminate()
            worker.wait(30)
        for label, figures in entry.items():
            print(f"  {label:<48} p50 {figures['p50_ms']:>8.3f} ms   p99 {figures['p99_ms']:>8.3f} ms",
                  flush=True)
        ratio = entry["projected_dashboard_redis"]["p50_ms"] / entry["strong_dashboard"]["p50_ms"]
        entry["projected_over_strong_dashboard_p50"] = round(ratio, 3)
        print(f"  projected/strong dashboard median: {ratio:.3f} (target <= 0.333)")
        report["sizes"][str(size)] = entry
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "read_strategies.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {RESULTS / 'read_strategies.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
