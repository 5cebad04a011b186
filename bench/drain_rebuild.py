"""Drain, rebuild, reconcile and scale-out throughput of the projectors.

    .venv/bin/python bench/drain_rebuild.py [--sizes 10000,100000] [--segments 1,2,4]

For each size: a shop of that many orders (and products) is written straight into
PostgreSQL with one outbox row per aggregate (a backlog), then each projector drains
it in a fresh worker process (rows/s and the process's peak RSS), each read model is
rebuilt from the write model while a reader keeps reading (docs/s, reads that failed
or saw nothing), and reconciled (seconds). Scale-out drains the order summary backlog
with 1, 2 and 4 segments, one process each. Elasticsearch figures are measured on
the ES-compatible dev server, not real Elasticsearch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchdb  # noqa: E402

DATABASE, NAMESPACE = "shop_bench_drain", "benchdrain"
RESULTS = Path(__file__).resolve().parent / "results"


def drain_in_child(name: str, segment: int = 0, segments: int = 1) -> dict:
    """Drain one projector segment in a fresh process; return its rows/s and peak RSS."""
    env = {**os.environ, f"SEGMENTS_{name.upper()}": str(segments)}
    started = time.monotonic()
    child = subprocess.run(
        [sys.executable, __file__, "--child-drain", name, "--segment", str(segment),
         "--of", str(segments)],
        env=env, capture_output=True, text=True, check=True,
    )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.monotonic() - started
    return result


def child_drain(name: str, segment: int, segments: int) -> None:
    benchdb.setup(DATABASE, NAMESPACE)
    from readmodels import projectors
    from readmodels.pipeline import runner

    projector = projectors.get(name)
    rows = 0
    started = time.monotonic()
    while True:
        result = runner.run_segment(projector, segment, segments, time_budget=3600,
                                    ignore_backoff=True)
        rows += result.rows
        if result.complete:
            break
    seconds = time.monotonic() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"read_model": name, "rows": rows, "seconds": seconds,
                      "rows_per_second": rows / seconds if seconds else 0,
                      "peak_rss_mb": round(peak_kb / 1024, 1)}))


def rebuild_with_reader(name: str) -> dict:
    from orders.models import Order
    from readmodels import queries
    from readmodels.operations import rebuild
    from readmodels.stores import StoreUnavailable

    # A document that exists before the rebuild starts: every read of it must find it.
    known_order = str(Order.objects.order_by("pk").values_list("pk", flat=True).first())
    stop = threading.Event()
    reads = {"ok": 0, "empty": 0, "failed": 0}

    def reader():
        from django.db import connection

        while not stop.is_set():
            try:
                if name == "customer_dashboard":
                    found = queries.customer_dashboard(1) is not None
                elif name == "order_summary":
                    found = queries.order_summary(known_order) is not None
                elif name == "products_search":
                    found = queries.search_products(queries.ProductSearch(q="product"))["count"] > 0
                else:
                    found = queries.customer_orders(customer_id=1, status=None, page_size=5,
                                                    search_after=None)["count"] > 0
                reads["ok" if found else "empty"] += 1
            except StoreUnavailable:
                reads["failed"] += 1
        connection.close()

    thread = threading.Thread(target=reader)
    thread.start()
    started = time.monotonic()
    try:
        run = rebuild.rebuild(name, batch_size=1000, grace_seconds=0)
    finally:
        stop.set()
        thread.join(60)
    seconds = time.monotonic() - started
    return {"read_model": name, "documents": run.copied, "seconds": seconds,
            "docs_per_second": run.copied / seconds if seconds else 0, "reads": reads}


# The ES-compatible dev server scans linearly and serves one request at a time: at this
# size a rebuild's bulk writes time out there. Real Elasticsearch is needed for the figure.
ES_SKIPPED = "not measured: needs real Elasticsearch at this size"


def reset_checkpoints() -> None:
    from readmodels.models import Checkpoint

    Checkpoint.objects.all().delete()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--segments", default="1,2,4")
    parser.add_argument("--es-max-size", type=int, default=10_000,
                        help="above this size, skip rebuilding and reconciling the "
                             "Elasticsearch views (the dev server cannot serve it)")
    parser.add_argument("--child-drain")
    parser.add_argument("--segment", type=int, default=0)
    parser.add_argument("--of", type=int, default=1)
    args = parser.parse_args()
    if args.child_drain:
        child_drain(args.child_drain, args.segment, args.of)
        return 0

    benchdb.setup(DATABASE, NAMESPACE)
    from readmodels.operations import reconcile

    report = {"machine": benchdb.machine(), "sizes": {}}
    for size in [int(s) for s in args.sizes.split(",")]:
        print(f"\n== {size:,} orders and products ==", flush=True)
        benchdb.truncate()
        benchdb.reset_views()
        started = time.monotonic()
        benchdb.bulk_shop(customers=max(100, size // 50), products=size, orders=size)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO orders_outboxmessage (aggregate_type, aggregate_id, "
                "aggregate_version, event_type, partition_key, payload, request_id) "
                "SELECT 'product', id::text, 1, 'ProductCreated', id::text, '{}'::jsonb, '' "
                "FROM orders_product ORDER BY id"
            )
            cursor.execute("ANALYZE")
        print(f"  data written in {time.monotonic() - started:.1f} s", flush=True)
        entry = {"drain": [], "rebuild": [], "reconcile": [], "scale_out": []}
        for name in ("order_summary", "customer_dashboard", "orders_search", "products_search"):
            result = drain_in_child(name)
            entry["drain"].append(result)
            print(f"  drain {name:<20} {result['rows']:>7} rows  {result['rows_per_second']:>9,.0f}"
                  f" rows/s  peak RSS {result['peak_rss_mb']} MB", flush=True)
        skip = set() if size <= args.es_max_size else {"orders_search", "products_search"}
        for name in ("order_summary", "customer_dashboard", "orders_search", "products_search"):
            if name in skip:
                entry["rebuild"].append({"read_model": name, "skipped": ES_SKIPPED})
                continue
            result = rebuild_with_reader(name)
            entry["rebuild"].append(result)
            print(f"  rebuild {name:<18} {result['documents']:>7} docs  "
                  f"{result['docs_per_second']:>9,.0f} docs/s  reads {result['reads']}", flush=True)
        for name in ("order_summary", "customer_dashboard", "orders_search", "products_search"):
            if name in skip:
                entry["reconcile"].append({"read_model": name, "skipped": ES_SKIPPED})
                continue
            started = time.monotonic()
            found = reconcile.reconcile(name)
            seconds = time.monotonic() - started
            entry["reconcile"].append({"read_model": name, "checked": found.checked,
                                       "differences": found.differences, "seconds": seconds})
            print(f"  reconcile {name:<16} {found.checked:>7} checked, {found.differences} "
                  f"differences, {seconds:.1f} s", flush=True)
        for segments in [int(s) for s in args.segments.split(",")]:
            benchdb.reset_views()
            reset_checkpoints()
            started = time.monotonic()
            threads, results = [], []
            for segment in range(segments):
                thread = threading.Thread(
                    target=lambda s=segment, n=segments, out=results: out.append(
                        drain_in_child("order_summary", s, n)
                    )
                )
                thread.start()
                threads.append(thread)
            for thread in threads:
                thread.join()
            seconds = time.monotonic() - started
            rows = sum(r["rows"] for r in results)
            entry["scale_out"].append({"segments": segments, "rows": rows, "seconds": seconds,
                                       "rows_per_second": rows / seconds})
            print(f"  scale-out order_summary, {segments} segment(s): {rows / seconds:,.0f} rows/s "
                  f"(wall, incl. process start)", flush=True)
        report["sizes"][str(size)] = entry
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "drain_rebuild.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {RESULTS / 'drain_rebuild.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
