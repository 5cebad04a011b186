"""The knee: the highest offered rate at which the views still keep their promise, ours and the peer's.

    .venv/bin/python bench/knee.py [--rates 25,50,75,100,150,200] [--seconds 20] [--smoke]

The shipped stack (shop.devstack's command lines: uvicorn with its workers, the Celery
worker with its concurrency, beat) runs with bench/peer/settings.py, so every order
is indexed by our projectors and by the peer (django-elasticsearch-dsl with its Celery
signal processor) in the same run, on the same processes and Elasticsearch server.
An open-loop client places orders over HTTP at each rate (a fresh customer per order)
and reads every tenth order back with its consistency token.

Ours holds at a rate when the Redis views' commit-to-visible p99 is under 50 ms and
orders_search's under 1 s; the peer holds when its index's p99 is under 1 s. Orders
a system never showed are reported next to it (the peer loses some by design). The
rates are stepped upwards; once neither system holds at two rates in a row, the
higher rates are not tried. Elasticsearch is the ES-compatible dev server (noida-db),
one request at a time: the ES figures say nothing about real Elasticsearch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import benchdb  # noqa: E402

DATABASE, NAMESPACE = "shop_bench_knee", "benchknee"
BROKER = "redis://127.0.0.1:6379/10"
RESULTS = HERE / "results"
REDIS_P99_MS, ES_P99_MS = 50.0, 1000.0
REDIS_VIEWS = ("order_summary", "customer_dashboard")


def holds(result: dict) -> dict:
    ours = all(result[v]["p99_ms"] <= REDIS_P99_MS for v in REDIS_VIEWS) and (
        result["orders_search"]["p99_ms"] <= ES_P99_MS)
    return {"ours": bool(ours), "peer": bool(result["peer"]["p99_ms"] <= ES_P99_MS)}


def knee_of(rates: dict, system: str) -> int:
    """The highest rate that held, counting only rates where every lower one held too."""
    best = 0
    for rate in sorted(rates, key=int):
        if not rates[rate]["holds"][system]:
            break
        best = int(rate)
    return best


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="25,50,75,100,150,200")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--smoke", action="store_true", help="tiny durations: does it work?")
    args = parser.parse_args()
    if args.smoke:
        args.rates, args.seconds = "10,20", 2
    benchdb.setup(DATABASE, NAMESPACE, DJANGO_SETTINGS_MODULE="peer.settings",
                  CELERY_BROKER_URL=BROKER,
                  PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    import peer_comparison
    import projection_lag
    import redis
    from django.db import connection
    from stackproc import Processes, staff_token

    report = {"machine": benchdb.machine(), "seconds": args.seconds,
              "targets": {"redis_p99_ms": REDIS_P99_MS, "es_p99_ms": ES_P99_MS},
              "notes": {"elasticsearch": peer_comparison.ES_NOTE,
                        "peer": peer_comparison.PROCESSOR_NOTE},
              "rates": {}}
    failing_in_a_row = 0
    for rate in [int(r) for r in args.rates.split(",")]:
        benchdb.truncate()
        benchdb.reset_views()
        peer_comparison.reset_peer_index()
        benchdb.bulk_shop(customers=int(rate * args.seconds), products=200, orders=0,
                          outbox=False)
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM orders_customer ORDER BY id")
            customers = [r[0] for r in cursor.fetchall()]
            cursor.execute("SELECT id FROM orders_product ORDER BY id")
            products = [r[0] for r in cursor.fetchall()]
            cursor.execute("ANALYZE")
        token = staff_token()
        processes = Processes({"CELERY_BROKER_URL": BROKER})
        try:
            processes.worker()
            processes.beat(f"/tmp/bench-knee-beat-{rate}")
            port = processes.web()
            print(f"rate {rate}/s for {args.seconds:.0f} s (ours and the peer) ...", flush=True)
            result = projection_lag.run_rate(
                rate, args.seconds, port, token, customers, products,
                views=(*REDIS_VIEWS, "orders_search", "peer"),
                watchers=(projection_lag.redis_watcher, projection_lag.es_watcher,
                          peer_comparison.peer_watcher),
                read_back_every=10)
        finally:
            processes.stop()
            redis.Redis.from_url(BROKER).flushdb()
        result["holds"] = holds(result)
        report["rates"][str(rate)] = result
        print(f"  achieved {result['achieved_rate']}/s; holds: {result['holds']}; "
              f"token reads {result['token_read']}", flush=True)
        for view in (*REDIS_VIEWS, "orders_search", "peer"):
            r = result[view]
            print(f"  {view:<20} p50 {r['p50_ms']:>7} ms  p99 {r['p99_ms']:>7}  "
                  f"never seen {r['never_seen']}", flush=True)
        failing_in_a_row = 0 if any(result["holds"].values()) else failing_in_a_row + 1
        if failing_in_a_row >= 2:
            break
    ours, peer = knee_of(report["rates"], "ours"), knee_of(report["rates"], "peer")
    report["knee"] = {"ours": ours, "peer": peer,
                      "ratio": round(ours / peer, 2) if peer else None}
    print(f"knee: ours {ours}/s, peer {peer}/s", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "knee.json").write_text(json.dumps(report, indent=2))
    return 0


def render(data: dict) -> str:
    knee = data.get("knee", {})
    rows = []
    for rate, r in data.get("rates", {}).items():
        t = r.get("token_read", {})
        rows.append([
            f"{rate}/s ({r['achieved_rate']}/s placed, {r['errors']} failed)",
            *(f"{r[v]['p99_ms']} ({r[v]['never_seen']})"
              for v in (*REDIS_VIEWS, "orders_search", "peer")),
            f"{t.get('p50_ms')} / {t.get('p99_ms')} ({t.get('stale')} of {t.get('reads')})",
            "yes" if r["holds"]["ours"] else "no", "yes" if r["holds"]["peer"] else "no",
        ])
    header = ["offered", "order_summary p99 ms (never seen)",
              "customer_dashboard p99 ms (never seen)", "orders_search p99 ms (never seen)",
              "peer p99 ms (never seen)", "token read p50 / p99 ms (stale)", "ours holds",
              "peer holds"]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    ratio = knee.get("ratio")
    out += ["", f"Knee: ours **{knee.get('ours')}/s**, the peer **{knee.get('peer')}/s**"
            + (f" (ratio {ratio})." if ratio is not None else "."),
            "", f"Holds means: Redis views p99 ≤ {REDIS_P99_MS:.0f} ms and orders_search p99 ≤ "
            f"{ES_P99_MS:.0f} ms (ours); the peer's index p99 ≤ {ES_P99_MS:.0f} ms. "
            + data.get("notes", {}).get("elasticsearch", "")]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
