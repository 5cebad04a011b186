"""The knee: the highest offered rate at which the views still keep their promise, ours and the peer's.

    .venv/bin/python bench/knee.py [--rates 10,15,20,25,50,75,100] [--seconds 20] [--warm-up 3] [--smoke]

    .venv/bin/python bench/knee.py --systems ours,peer_on_commit   # some systems only

The shipped stack (shop.devstack's command lines: uvicorn with its workers, the Celery
worker with its concurrency, beat) runs each system alone: ours (our projectors), then
the peer (django-elasticsearch-dsl with its Celery signal processor, bench/peer/) with
our projectors stopped, on the same processes and Elasticsearch server; the peer twice:
its processor as shipped (tasks sent inside the transaction) and sent on commit
(`transaction.on_commit`, as many projects configure it). An open-loop client places
orders over HTTP at each rate (a fresh customer per order); for ours it reads every
tenth order back with its consistency token. Each step also records the CPU time the
web and worker processes (and their children) spent per order placed in the measured
run: the peer's web figure includes our outbox write, which its commands still make.

Ours holds at a rate when the Redis views' commit-to-visible p99 is under 50 ms and
orders_search's under 1 s; the peer holds when its index's p99 is under 1 s. An order
a system never showed counts as never visible: a system that loses more than 1 in 100
orders holds at no rate, however fast it shows the rest (the peer loses some by
design: its task can run before the order's transaction commits). The
rates are stepped upwards, every system in turn at each rate; once a system has failed
at two rates in a row, its higher rates are not tried (unless --every-rate: on a
machine shared with other load, where a system can fail at a low rate for the others'
sake). Elasticsearch is the ES-compatible dev server (noida-db), one request at a
time: the ES figures say nothing about real Elasticsearch.
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


SYSTEMS = {
    # Ours: the shop as it ships, without the peer.
    "ours": {"env": {"DJANGO_SETTINGS_MODULE": "shop.settings"},
             "views": (*REDIS_VIEWS, "orders_search"), "beat": True, "read_back_every": 10},
    # The peer on the same stack, with our projectors stopped (their tasks go to a
    # queue no worker reads): each system has the worker and the ES server to itself.
    "peer": {"env": {"DJANGO_SETTINGS_MODULE": "peer.settings", "PEER_ALONE": "true",
                     "PEER_PROCESSOR": "shipped"},
             "views": ("peer",), "beat": False, "read_back_every": 0},
    # The same peer with its tasks sent after the commit (bench/peer/processors.py).
    "peer_on_commit": {"env": {"DJANGO_SETTINGS_MODULE": "peer.settings", "PEER_ALONE": "true",
                               "PEER_PROCESSOR": "on_commit"},
                       "views": ("peer",), "beat": False, "read_back_every": 0},
}
PEERS = [name for name in SYSTEMS if name.startswith("peer")]


def holds(system: str, result: dict) -> bool:
    """Every view's p99 within its bound, counting orders it never showed as never."""
    def within(view: str, bound: float) -> bool:
        p99 = result[view].get("p99_all_ms")
        return p99 is not None and p99 <= bound

    if system in PEERS:
        return within("peer", ES_P99_MS)
    return (all(within(v, REDIS_P99_MS) for v in REDIS_VIEWS)
            and within("orders_search", ES_P99_MS))


def knee_of(rates: dict) -> int:
    """The highest rate that held, counting only rates where every lower one held too."""
    best = 0
    for rate in sorted(rates, key=int):
        if not rates[rate]["holds"]:
            break
        best = int(rate)
    return best


def search_knee(rates: dict) -> int:
    """Ours judged like the peer: only its Elasticsearch view (orders_search), same bound."""
    best = 0
    for rate in sorted(rates, key=int):
        p99 = rates[rate].get("orders_search", {}).get("p99_all_ms")
        if p99 is None or p99 > ES_P99_MS:
            break
        best = int(rate)
    return best


def step(system: str, rate: int, seconds: float, warm_up: float = 0) -> dict:
    """One system at one offered rate, on a freshly started shipped stack.

    The first `warm_up` seconds of load at the rate are not measured: a stack serving
    its first requests (each web process opening its pooled connections, the worker's
    first tasks) is not the steady state the knee is about, and in a 20 s run its
    first second alone is the p99.
    """
    import peer_comparison
    import projection_lag
    import redis
    from stackproc import Processes, cpu_seconds, staff_token

    warm_orders = int(rate * warm_up)
    customers, products = benchdb.fresh_shop(warm_orders + int(rate * seconds))
    peer_comparison.reset_peer_index()  # after fresh_shop: it drops the namespace's indices
    token = staff_token()
    spec = SYSTEMS[system]
    watchers = {"order_summary": projection_lag.redis_watcher,
                "orders_search": projection_lag.es_watcher,
                "peer": peer_comparison.peer_watcher}
    processes = Processes({"CELERY_BROKER_URL": BROKER, **spec["env"]})
    try:
        processes.worker()
        if spec["beat"]:
            processes.beat(f"/tmp/bench-knee-beat-{system}-{rate}")
        port = processes.web()
        print(f"{system}: {rate}/s for {seconds:.0f} s (after {warm_up:.0f} s of warm-up) ...",
              flush=True)
        for run_seconds, run_customers in ((warm_up, customers[:warm_orders]),
                                           (seconds, customers[warm_orders:])):
            if not run_seconds:
                continue
            cpu_before = {role: cpu_seconds(processes.pids(role)) for role in ("web", "worker")}
            result = projection_lag.run_rate(
                rate, run_seconds, port, token, run_customers, products, views=spec["views"],
                watchers=tuple(w for v, w in watchers.items() if v in spec["views"]),
                read_back_every=spec["read_back_every"])
            # Measured after the drain: the worker's CPU for the run's last orders too.
            result["cpu_ms_per_order"] = {
                role: round((cpu_seconds(processes.pids(role)) - cpu_before[role]) * 1000
                            / max(1, result["orders"]), 2)
                for role in ("web", "worker")}
    finally:
        processes.stop()
        redis.Redis.from_url(BROKER).flushdb()
    result["holds"] = holds(system, result)
    print(f"  achieved {result['achieved_rate']}/s; holds: {result['holds']}; "
          f"token reads {result.get('token_read')}; CPU ms per order "
          f"{result['cpu_ms_per_order']}", flush=True)
    for view in spec["views"]:
        r = result[view]
        print(f"  {view:<20} p50 {r['p50_ms']:>7} ms  p99 {r['p99_ms']:>7}  "
              f"never seen {r['never_seen']}", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="10,15,20,25,50,75,100")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warm-up", type=float, default=3,
                        help="seconds of load at each rate before the measured run")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--every-rate", action="store_true",
                        help="try every rate for every system, past two failures too")
    parser.add_argument("--smoke", action="store_true", help="tiny durations: does it work?")
    args = parser.parse_args()
    if args.smoke:
        args.rates, args.seconds, args.warm_up = "10,20", 2, 1
    benchdb.setup(DATABASE, NAMESPACE, DJANGO_SETTINGS_MODULE="peer.settings",
                  CELERY_BROKER_URL=BROKER,
                  PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    import peer_comparison

    report = {"machine": benchdb.machine(), "seconds": args.seconds, "warm_up": args.warm_up,
              "every_rate": args.every_rate,
              "command": " ".join(["bench/knee.py", *sys.argv[1:]]),
              "load_average": {"start": benchdb.load_average()},
              "targets": {"redis_p99_ms": REDIS_P99_MS, "es_p99_ms": ES_P99_MS},
              "notes": {"elasticsearch": peer_comparison.ES_NOTE,
                        "peer": peer_comparison.PROCESSOR_NOTE},
              "systems": {}}
    # Rate by rate, every system in turn: a machine whose other load changes during the
    # run then weighs on every system at about the same rates.
    systems = args.systems.split(",")
    rates: dict = {system: {} for system in systems}
    failing_in_a_row = dict.fromkeys(systems, 0)
    for rate in [int(r) for r in args.rates.split(",")]:
        for system in systems:
            if failing_in_a_row[system] >= 2 and not args.every_rate:
                continue  # past its knee: higher rates only take longer to fail
            rates[system][str(rate)] = step(system, rate, args.seconds, args.warm_up)
            failing_in_a_row[system] = (0 if rates[system][str(rate)]["holds"]
                                        else failing_in_a_row[system] + 1)
    for system in systems:
        report["systems"][system] = {"rates": rates[system], "knee": knee_of(rates[system])}
    report["load_average"]["end"] = benchdb.load_average()
    knees = {system: figures["knee"] for system, figures in report["systems"].items()}
    ours = knees.get("ours")
    report["knee"] = {**knees, **{
        f"ratio{name[len('peer'):]}": round(ours / knees[name], 2) if knees[name] else None
        for name in PEERS if name in knees and ours is not None}}
    print(f"knee: {knees}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "knee.json").write_text(json.dumps(report, indent=2))
    return 0


def side_by_side(data: dict) -> list[str]:
    """Ours against the peer that sends on commit, at each rate both ran: the search
    views' p99 and the CPU each spent per order."""
    ours = data["systems"].get("ours", {}).get("rates", {})
    peer = data["systems"].get("peer_on_commit", {}).get("rates", {})
    rows = []
    for rate in sorted(set(ours) & set(peer), key=int):
        o, p = ours[rate], peer[rate]
        oc, pc = o.get("cpu_ms_per_order", {}), p.get("cpu_ms_per_order", {})
        rows.append(f"| {rate}/s | {o['orders_search']['p50_ms']} / {o['orders_search']['p99_ms']}"
                    f" ({o['orders_search']['never_seen']}) | {p['peer']['p50_ms']} / "
                    f"{p['peer']['p99_ms']} ({p['peer']['never_seen']}) | "
                    f"{oc.get('web', '-')} / {oc.get('worker', '-')} | "
                    f"{pc.get('web', '-')} / {pc.get('worker', '-')} |")
    if not rows:
        return []
    both = sorted(set(ours) & set(peer), key=int)
    faster = [r for r in both if peer[r]["peer"]["p99_ms"] < ours[r]["orders_search"]["p99_ms"]]
    cheaper = [r for r in both if peer[r].get("cpu_ms_per_order", {}).get("worker", 1e9)
               < ours[r].get("cpu_ms_per_order", {}).get("worker", 0)]

    def rates(found: list[str]) -> str:
        return ", ".join(f"{r}/s" for r in found) or "no rate tried"

    summary = (f"The peer sending on commit shows its orders sooner than our orders_search "
               f"(p99) at {rates(faster)}, and its worker spends less CPU per order than ours "
               f"at {rates(cheaper)}. Our worker's CPU per order falls as the rate grows (a "
               "run's fixed cost is paid once per batch, and batches grow with load); the "
               "peer pays one task and one index request with refresh=true per model save, "
               "whatever the rate, so its lag grows with the queue in front of the one ES "
               "dev server.")
    return ["", "Ours against the peer sending on commit, rate by rate (same run):", "",
            "| offered | ours: orders_search p50 / p99 ms (never seen) | peer on commit: "
            "p50 / p99 ms (never seen) | ours CPU ms per order: web / worker | peer on "
            "commit CPU ms per order: web / worker |", "|---|---|---|---|---|", *rows, "",
            "Ours also keeps two Redis views (order_summary, customer_dashboard) for that "
            "CPU; the peer keeps one search index. " + summary + " What the peer still "
            "loses without an outbox (a process dying between the commit and the send; a "
            "broker that refuses the send) is measured in the side-by-side section."]


def render(data: dict) -> str:
    knee = data.get("knee", {})
    if "systems" not in data:
        return "(an older run's format: rerun `bench/knee.py`)"
    header = ["system", "offered", "order_summary p99 ms (never seen)",
              "customer_dashboard p99 ms (never seen)", "orders_search p99 ms (never seen)",
              "peer p99 ms (never seen)", "token read p50 / p99 ms (stale)",
              "CPU ms per order: web / worker", "holds"]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for system, figures in data["systems"].items():
        for rate, r in figures["rates"].items():
            t = r.get("token_read")
            cells = [system, f"{rate}/s ({r['achieved_rate']}/s placed, {r['errors']} failed)"]
            cells += [f"{r[v]['p99_ms']} ({r[v]['never_seen']})" if v in r else "-"
                      for v in (*REDIS_VIEWS, "orders_search", "peer")]
            cells.append(f"{t['p50_ms']} / {t['p99_ms']} ({t['stale']} of {t['reads']})"
                         if t else "-")
            cpu = r.get("cpu_ms_per_order")
            cells.append(f"{cpu['web']} / {cpu['worker']}" if cpu else "-")
            cells.append("yes" if r["holds"] else "no")
            out.append("| " + " | ".join(str(c) for c in cells) + " |")
    names = {"peer": "the peer as shipped", "peer_on_commit": "the peer sending on commit"}
    knees = [f"{names.get(s, s)} **{knee[s]}/s**"
             + (f" (ours / it: {knee[f'ratio{s[4:]}']})"
                if s in names and knee.get(f"ratio{s[4:]}") is not None else "")
             for s in ("peer", "peer_on_commit") if s in knee]
    ours_rates = data["systems"].get("ours", {}).get("rates")
    like_for_like = (f" Ours judged as the peers are (its Elasticsearch view alone, "
                     f"orders_search p99 ≤ {ES_P99_MS:.0f} ms): **{search_knee(ours_rates)}/s**."
                     if ours_rates else "")
    out += ["", f"Knee: ours **{knee.get('ours')}/s**, " + ", ".join(knees) + "."
            + like_for_like,
            "", "peer: django-elasticsearch-dsl's CelerySignalProcessor as shipped (its two "
            "tasks per save sent inside the transaction); peer_on_commit: the same tasks sent "
            "with `transaction.on_commit` (bench/peer/processors.py). CPU: user + system "
            "time of the web processes and of the Celery worker (children included) over "
            "the measured run and its drain, per order placed; the peer's web figure "
            "includes our outbox write, which its commands still make.",
            "", "Each system runs alone on the shipped stack (the peer with our projectors "
            "stopped), so neither takes worker processes or Elasticsearch time from the "
            f"other. Holds means: Redis views p99 ≤ {REDIS_P99_MS:.0f} ms and orders_search "
            f"p99 ≤ {ES_P99_MS:.0f} ms (ours); the peer's index p99 ≤ {ES_P99_MS:.0f} ms; "
            "an order never shown counts as never visible (p99 over all orders). "
            + (f"Each run is measured after {data['warm_up']:.0f} s of load at its rate on "
               "the fresh stack (its first requests open the web's pooled connections). "
               if data.get("warm_up") else "")
            + data.get("notes", {}).get("elasticsearch", "")]
    out += side_by_side(data)
    if data.get("command"):
        out += ["", benchdb.shared_machine_note(data) + f"Command: `.venv/bin/python "
                f"-m shop.devstack exec -- .venv/bin/python {data['command']}`"
                + (" (every rate tried for every system)." if data.get("every_rate") else ".")]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
