"""A soak: a steady rate for ten minutes, sampling what must stay flat.

    .venv/bin/python bench/soak.py [--rate 50] [--seconds 600] [--every 5] [--smoke]

The shipped stack (shop.devstack's command lines) under an open-loop client placing
orders over HTTP (a fresh customer per order, every tenth read back with its
consistency token). Every few seconds: PostgreSQL connections (this database, and the
whole server), resident memory of the web processes and of the Celery worker
(parent and children), and each read model's lag as readers see it. Flat means the
last minute looks like the first: the report gives both, the peak, and the series.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import benchdb  # noqa: E402

DATABASE, NAMESPACE = "shop_bench_soak", "benchsoak"
BROKER = "redis://127.0.0.1:6379/9"
RESULTS = HERE / "results"
METRICS = ("pg_connections", "pg_connections_server", "web_rss_mb", "worker_rss_mb",
           "lag_ms_max")


def sample(processes) -> dict:
    from django.db import connection
    from stackproc import rss_mb

    from readmodels import projectors
    from readmodels.pipeline import progress

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FILTER (WHERE datname = current_database()), count(*) "
                       "FROM pg_stat_activity WHERE backend_type = 'client backend' "
                       "AND pid <> pg_backend_pid()")
        mine, server = cursor.fetchone()
    lags = {name: progress.state(name).lag_ms for name in projectors.PROJECTORS}
    return {"pg_connections": mine, "pg_connections_server": server,
            "web_rss_mb": rss_mb(processes.pids("web")),
            "worker_rss_mb": rss_mb(processes.pids("worker")),
            "lag_ms": lags, "lag_ms_max": max(lags.values())}


def summarise(series: list[dict], window: float, every: float) -> dict:
    """First and last `window` seconds (medians), and the peak, of each metric."""
    n = max(1, int(window / every))
    out = {}
    for metric in METRICS:
        values = [s[metric] for s in series]
        if not values:
            continue
        out[metric] = {"first": statistics.median(values[:n]),
                       "last": statistics.median(values[-n:]), "peak": max(values)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--every", type=float, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny durations: does it work?")
    args = parser.parse_args()
    if args.smoke:
        args.rate, args.seconds, args.every = 20, 6, 1
    benchdb.setup(DATABASE, NAMESPACE, CELERY_BROKER_URL=BROKER)
    import projection_lag
    import redis
    from stackproc import Processes, staff_token

    customers, products = benchdb.fresh_shop(int(args.rate * args.seconds))
    token = staff_token()
    processes = Processes({"CELERY_BROKER_URL": BROKER})
    series: list[dict] = []
    outcome: dict = {}
    try:
        processes.worker()
        processes.beat("/tmp/bench-soak-beat")
        port = processes.web()

        def load():
            outcome.update(projection_lag.run_rate(
                args.rate, args.seconds, port, token, customers, products,
                read_back_every=10))

        print(f"soak at {args.rate}/s for {args.seconds:.0f} s ...", flush=True)
        loader = threading.Thread(target=load)
        started = time.monotonic()
        loader.start()
        while loader.is_alive():
            at = time.monotonic() - started
            if at <= args.seconds:
                series.append({"t": round(at, 1), **sample(processes)})
                print(f"  {json.dumps(series[-1])}", flush=True)
            loader.join(timeout=args.every)  # the sampling period
    finally:
        processes.stop()
        redis.Redis.from_url(BROKER).flushdb()
    report = {"machine": benchdb.machine(), "rate": args.rate, "seconds": args.seconds,
              "every": args.every, "load": outcome,
              "summary": summarise(series, min(60.0, args.seconds / 5), args.every),
              "series": series}
    print(json.dumps(report["summary"]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(report, indent=2))
    return 0


def render(data: dict) -> str:
    load, summary = data.get("load", {}), data.get("summary", {})
    t = load.get("token_read", {})
    rows = [[m.replace("_", " "), v["first"], v["last"], v["peak"]] for m, v in summary.items()]
    out = [f"{data.get('rate')}/s offered for {data.get('seconds', 0):.0f} s: "
           f"{load.get('achieved_rate')}/s placed, {load.get('errors')} failed; token read "
           f"of one's own order p50 {t.get('p50_ms')} ms, p99 {t.get('p99_ms')} ms, "
           f"{t.get('stale')} stale of {t.get('reads')}.", "",
           "| sampled every " + f"{data.get('every')} s | first minute (median) | "
           "last minute (median) | peak |", "|---|---|---|---|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    out += ["", "Commit-to-visible over the soak (p99 ms): " + ", ".join(
        f"{v} {load[v]['p99_ms']}" for v in ("order_summary", "customer_dashboard",
                                             "orders_search") if v in load) + ".",
            "", "The series is in `bench/results/soak.json`."]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
