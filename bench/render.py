"""Render bench/results/all.json as docs/BENCHMARKS.md."""

from __future__ import annotations

import json


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _num(value, digits: int = 0) -> str:
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _generic(data) -> str:
    return "```json\n" + json.dumps(data, indent=2)[:6000] + "\n```"


def _drain(data: dict) -> str:
    parts = []
    for size, entry in data.get("sizes", {}).items():
        parts.append(f"**{int(size):,} orders (and products)**\n")
        parts.append(_table(
            ["read model", "drain rows/s", "peak worker RSS (MB)", "rebuild docs/s",
             "reads during rebuild (ok / empty / failed)", "reconcile (s)"],
            [
                [d["read_model"], _num(d["rows_per_second"]), d["peak_rss_mb"],
                 r.get("skipped") or _num(r["docs_per_second"]),
                 r.get("skipped")
                 or f"{r['reads']['ok']} / {r['reads']['empty']} / {r['reads']['failed']}",
                 c.get("skipped") or _num(c["seconds"], 1)]
                for d, r, c in zip(entry["drain"], entry["rebuild"], entry["reconcile"],
                                   strict=False)
            ],
        ))
        parts.append("")
        parts.append(_table(
            ["order_summary segments (one process each)", "rows/s (wall, incl. start-up)"],
            [[s["segments"], _num(s["rows_per_second"])] for s in entry["scale_out"]],
        ))
        parts.append("")
    return "\n".join(parts)


def _reads(data: dict) -> str:
    parts = []
    for size, entry in data.get("sizes", {}).items():
        rows = [[label, _num(v["p50_ms"], 3), _num(v["p99_ms"], 3)]
                for label, v in entry.items() if isinstance(v, dict) and "p50_ms" in v]
        parts.append(f"**{int(size):,} orders**\n")
        parts.append(_table(["read", "p50 (ms)", "p99 (ms)"], rows))
        parts.append(f"\nprojected / strong dashboard median: "
                     f"{entry.get('projected_over_strong_dashboard_p50')} (target ≤ 0.333)\n")
    return "\n".join(parts)


def _commands(data: dict) -> str:
    modes = [("outbox_on", "outbox + projectors running"),
             ("outbox_only", "outbox, no projector running"),
             ("outbox_off", "no outbox (benchmark-only switch)")]
    labels = list(dict.fromkeys(label for key, _ in modes for label in data.get(key, {})))
    rows = []
    for key, title in modes:
        for label in labels:
            f = data.get(key, {}).get(label)
            if f:
                rows.append([title, label.replace("_", " "), _num(f["orders_per_second"], 1),
                             _num(f["p50_ms"], 1), _num(f["p99_ms"], 1)])
    out = [_table(["mode", "load", "place_order/s", "p50 (ms)", "p99 (ms)"], rows), ""]
    cpu = [[title, label.replace("_", " "), f.get("web_cpu_ms_per_order"),
            f.get("worker_cpu_ms_per_order")]
           for key, title in modes for label, f in data.get(key, {}).items()
           if isinstance(f, dict) and "web_cpu_ms_per_order" in f]
    if cpu:
        out += ["CPU per order placed over HTTP (ms, user + system, all processes of the "
                "role): what the projection pipeline costs next to the command.", "",
                _table(["mode", "load", "web", "Celery worker"], cpu), ""]
    for key, title in (("cost_outbox_only", "the outbox write alone"),
                       ("cost_on", "the outbox with projectors on the same 2 cores")):
        if key in data:
            costs = ", ".join(f"{k.replace('_', ' ')}: {v * 100:.0f}%" for k, v in data[key].items())
            out.append(f"Throughput lost to {title} (target ≤ 10%): {costs}.\n")
    return "\n".join(out)


def _lag(data: dict) -> str:
    rows = []
    for rate, r in data.get("rates", {}).items():
        for model in ("order_summary", "customer_dashboard", "orders_search"):
            f = r[model]
            store = "Redis" if model != "orders_search" else "ES (dev server)"
            rows.append([f"{rate}/s ({r['achieved_rate']}/s achieved)", f"{model} ({store})",
                         f["p50_ms"], f["p95_ms"], f["p99_ms"], f["max_ms"], f["never_seen"]])
    return _table(["offered rate", "read model", "p50 ms", "p95 ms", "p99 ms", "max ms",
                   "never seen"], rows) + (
        "\n\nTargets at 100/s: Redis views p99 ≤ 50 ms, Elasticsearch views searchable "
        "p99 ≤ 150 ms.\n")


def _peer(data: dict) -> str:
    from peer_comparison import render as render_peer

    return render_peer(data)


def _knee(data: dict) -> str:
    from knee import render as render_knee

    return render_knee(data)


def _session_cpu(data: dict) -> str:
    from session_cpu import render as render_session_cpu

    return render_session_cpu(data)


def _soak(data: dict) -> str:
    from soak import render as render_soak

    return render_soak(data)


def _run_cost(data: dict) -> str:
    rows = [[name, m["one_row_run_ms"], m["per_row_ms"], m["fixed_per_run_ms"],
             m.get("sql_statements_per_one_row_run")]
            for name, m in data.get("models", {}).items()]
    return _table(["read model", "one-row run (ms)", "per row (ms)", "fixed per run (ms)",
                   "SQL statements per one-row run"],
                  rows) + ("\n\nIn process, wall clock; a backlog of "
                           f"{data.get('rows')} OrderPlaced rows. Under load the pipeline "
                           "pays the fixed part once per batch, so batches that grow with "
                           "load are what keeps it cheap.\n")


def _session_reads(data: dict) -> str:
    names = {"session": "session token (nothing sent)", "none": "opted out (`consistency=none`)"}
    rows = [[names.get(mode, mode), m["wait_ms_p50"], m["wait_ms_p99"], m["read_ms_p50"],
             m["read_ms_p99"], f"{m['order_not_shown']}/{m['reads']}"]
            for mode, m in data.get("modes", {}).items()]
    return _table(["read", "wait p50 (ms)", "wait p99 (ms)", "read p50 (ms)", "read p99 (ms)",
                   "order not shown yet"], rows) + (
        "\n\nA signed-in customer places an order and at once reads its summary (Redis), "
        "over HTTP against `make run`'s stack (`bench/session_reads.py`). With the "
        "session token the read waits for the customer's own order; opted out it answers "
        "at once, mostly without it.\n")


def _fleet(data: dict) -> str:
    if data.get("skipped"):
        return f"Not measured: {data['skipped']}."
    rows = [[r["segments"], r["hosts"], _num(r["rows_projected"]), _num(r["seconds"], 2),
             _num(r["rows_per_second"]),
             "; ".join(f"host {h}: {len(s)} ({r['lock_samples_by_host'].get(h, 0)} samples)"
                       for h, s in sorted(r["segments_by_host"].items()))]
            for r in data["runs_by_config"]]
    return "\n".join([
        f"A backlog of {data['orders']:,} orders placed with no worker running, then drained "
        "by the shipped worker command (concurrency 2) on 1 or 2 hosts: network namespaces "
        "on a private bridge, every server on the host side (`bench/fleet_scaleout.py`, as "
        "root). Rows projected: every read model's rows, every segment; time: from the first "
        "checkpoint that moved to every segment covering the backlog. Segments per host: the "
        "segments whose advisory lock a host was seen holding (pg_locks, sampled every 50 ms). "
        "Every host runs on the same 2 cores as the servers and each other, so a second host "
        "adds processes, not CPU: the point is that the work spreads and nothing breaks.", "",
        _table(["segments per view", "hosts", "rows projected", "seconds", "rows/s",
                "segments run by"], rows)])


RENDERERS = {"session_reads": _session_reads, "session_cpu": _session_cpu, "peer_comparison": _peer,
             "knee": _knee,
             "fleet_scaleout": _fleet, "soak": _soak, "run_cost": _run_cost, "drain_rebuild": _drain,
             "read_strategies": _reads, "command_throughput": _commands, "projection_lag": _lag}

TITLES = {
    "command_throughput": "Command throughput and the cost of the outbox",
    "projection_lag": "Commit-to-visible lag at steady write rates",
    "peer_comparison": "The peer, side by side: django-elasticsearch-dsl with its Celery "
                       "signal processor",
    "read_strategies": "Read strategies",
    "drain_rebuild": "Drain, rebuild, reconcile and scale-out",
    "knee": "The knee: the highest rate at which the views keep their promise, ours and the "
            "peer's",
    "soak": "Soak: ten minutes at a steady rate",
    "run_cost": "What a projector run costs: fixed per run, and per row",
    "session_reads": "Reading one's own write: with the session token and without",
    "session_cpu": "Web CPU per request: anonymous, API token and browser session clients",
    "fleet_scaleout": "Scale-out over hosts: a backlog drained by workers on 1 and 2 hosts",
}


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "**missed**")


def _search_knee(data: dict) -> int | None:
    from knee import search_knee

    rates = data.get("systems", {}).get("ours", {}).get("rates")
    return search_knee(rates) if rates else None


def _load(data: dict) -> str:
    load = data.get("load_average")
    return (f" (machine shared: load average {load['start']}–{load['end']} on 2 cores)"
            if load else "")


def _targets(results: dict) -> str:
    """Each target of the benchmark issue against what this report measured."""
    rows = []
    lag = results.get("projection_lag", {}).get("rates", {}).get("100")
    if lag:
        redis = max(lag["order_summary"]["p99_ms"], lag["customer_dashboard"]["p99_ms"])
        rows.append(["Redis views p99 at 100/s ≤ 50 ms", f"{redis} ms "
                     f"({lag['achieved_rate']}/s achieved)", _verdict(redis <= 50)])
        es_p99 = lag["orders_search"]["p99_ms"]
        rows.append(["ES views searchable p99 at 100/s ≤ 150 ms (dev server)", f"{es_p99} ms",
                     _verdict(es_p99 <= 150)])
    if lag:
        rows.append(["100/s offered: ≥ 95/s placed, none refused for want of a connection",
                     f"{lag['achieved_rate']}/s placed, {lag['errors']} failed "
                     f"{lag.get('error_statuses') or ''}".rstrip(),
                     _verdict(lag["achieved_rate"] >= 95 and lag["errors"] == 0)])
        rows.append(["ES views p99 at 100/s ≤ 250 ms (issue \"Under load\", dev server)",
                     f"{es_p99} ms", _verdict(es_p99 <= 250)])
    soak_load = results.get("soak", {}).get("load", {})
    token = soak_load.get("token_read")
    if token:
        rows.append(["token read of one's own order p99 ≤ 100 ms, none stale (soak)",
                     f"p50 {token['p50_ms']} ms, p99 {token['p99_ms']} ms, {token['stale']} "
                     f"stale of {token['reads']}",
                     _verdict(token["p99_ms"] <= 100 and token["stale"] == 0)])
    peak = results.get("soak", {}).get("summary", {}).get("pg_connections_server", {}).get("peak")
    if peak is not None:
        rows.append(["peak PostgreSQL connections ≤ 50 (soak, the whole stack)", str(peak),
                     _verdict(peak <= 50)])
    share = results.get("command_throughput", {}).get("projectors_on_share")
    if share:
        worst = min(share.values())
        rows.append(["HTTP write throughput with the projectors on ≥ 60% of them stopped",
                     ", ".join(f"{k.replace('_', ' ')} {v * 100:.0f}%" for k, v in share.items()),
                     _verdict(worst >= 0.6)])
    knee = results.get("knee", {}).get("knee")
    for peer, ratio, label in (("peer", "ratio", "the peer's rate, as shipped"),
                               ("peer_on_commit", "ratio_on_commit",
                                "the peer's rate, sending on commit")):
        if not knee or peer not in knee or "ours" not in knee:
            continue
        search = _search_knee(results["knee"])
        rows.append([f"ours sustains ≥ 3× {label} (the knee, same bench run, each alone)",
                     f"ours {knee['ours']}/s, peer {knee[peer]}/s"
                     + (" (the peer holds at no rate tried)" if not knee[peer] else "")
                     + (f"; ours judged as the peer is (its search view alone): {search}/s"
                        if search is not None else "") + _load(results["knee"]),
                     _verdict(knee[ratio] >= 3 if knee.get(ratio) is not None
                              else knee["ours"] > 0)])
    soak = results.get("soak", {}).get("summary")
    if soak:
        rows.append(["soak: connections, RSS and lag flat (last minute vs first)",
                     ", ".join(f"{m.replace('_', ' ')} {v['first']} → {v['last']}"
                               for m, v in soak.items()), "see the soak section"])
    cost = results.get("command_throughput", {}).get("cost_outbox_only")
    if cost:
        worst = max(cost.values())
        rows.append(["outbox write costs ≤ 10% of throughput",
                     ", ".join(f"{k.replace('_', ' ')} {v * 100:.0f}%" for k, v in cost.items()),
                     _verdict(worst <= 0.10)])
    sizes = results.get("read_strategies", {}).get("sizes", {})
    if "100000" in sizes:
        ratio = sizes["100000"].get("projected_over_strong_dashboard_p50")
        rows.append(["projected read ≤ 1/3 of strong read's median at 100k", str(ratio),
                     _verdict(ratio is not None and ratio <= 1 / 3)])
    drain = results.get("drain_rebuild", {}).get("sizes", {})
    if "100000" in drain:
        entry = drain["100000"]
        for d in entry["drain"]:
            target = 3000 if d["read_model"].endswith("_search") else 10000
            label = " (dev server)" if target == 3000 else ""
            rows.append([f"drain {d['read_model']}{label} ≥ {target:,} rows/s at 100k",
                         _num(d["rows_per_second"]), _verdict(d["rows_per_second"] >= target)])
        for r in entry["rebuild"]:
            if r["read_model"] == "order_summary":
                rows.append(["rebuild of 100,000 orders ≥ 3,000 docs/s, reads served",
                             f"{_num(r['docs_per_second'])} docs/s, {r['reads']['empty']} empty "
                             f"and {r['reads']['failed']} failed reads",
                             _verdict(r["docs_per_second"] >= 3000 and not r["reads"]["empty"]
                                      and not r["reads"]["failed"])])
        if "10000" in drain:
            small = max(d["peak_rss_mb"] for d in drain["10000"]["drain"])
            large = max(d["peak_rss_mb"] for d in entry["drain"])
            rows.append(["worker peak RSS flat from 10k to 100k rows", f"{small} → {large} MB",
                         _verdict(large <= small * 1.25)])
    if not rows:
        return ""
    return "\n".join([
        "## Targets", "", _table(["target", "measured", ""], rows), "",
        "Where the time goes (py-spy on the Celery worker's children under HTTP load; see "
        "docs/PIPELINE_PROFILE.md for the method and the figures): before the pipeline work, "
        "about 70% of a projection task's time was the fixed cost of a run, not rows "
        "(checkpoint get_or_create, the store-lost check, the checkpoint save through the "
        "ORM, separate horizon and pending_since queries, lock and unlock, a Celery hop per "
        "read model per commit). A run is now lock+checkpoint, one outbox read (horizon, rows "
        "and the oldest unseen row in one statement), the loads, the write, one save, one "
        "announce and the unlock; wake-ups run per store lane with micro-batching, so a busy "
        "lane pays that fixed cost once per batch, not per commit. Every process shares 2 "
        "cores with the load generator and the servers; the dashboard is rebuilt from all of "
        "a customer's orders, so its drain rate falls as orders per customer grow; the "
        "outbox write is one INSERT ... RETURNING plus the after-commit wake-up (a Redis "
        "round trip) per command.", ""])


# Below this line docs/BENCHMARKS.md holds sections written from benchmarks that
# run_all does not run (bench/token_cost.py, bench/slow_bodies.py); run_all keeps them.
HAND_WRITTEN = "<!-- Sections below come from benchmarks run on their own; make bench keeps them. -->\n"


def render(report: dict) -> str:
    machine = report["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {report['date']} with `{report['command']}` "
        f"({report['repeats']} runs of each; every figure is the median over the runs).",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory']} memory, "
        f"{machine['os']}, Python {machine['python']}, {machine['postgres']}. PostgreSQL and "
        "Redis are the machine's servers; Elasticsearch figures come from the "
        "ES-compatible dev server (noida-db), which scans linearly and serves one request "
        "at a time: they say nothing about real Elasticsearch. This machine has 2 cores, "
        "shared by the load generator, the web server, the workers and the servers.",
        "",
        "Raw results: `bench/results/all.json`.",
        "",
        _targets(report["results"]),
    ]
    for name, data in report["results"].items():
        lines.append(f"## {TITLES.get(name, name)}")
        lines.append("")
        if "measured" in data:
            lines.append(f"_Measured {data['measured']}; median of {data.get('runs', 1)} "
                         f"run(s)._")
            lines.append("")
        other = data.get("machine")
        if isinstance(other, dict) and other.get("cpu") != machine.get("cpu"):
            # A section kept from an earlier run may come from another machine.
            lines += [f"_On another machine than the header's: {other.get('cpu')}, "
                      f"{other.get('cores')} cores._", ""]
        if data.get("missing"):
            lines.append("Not measured in this run.")
        elif "markdown" in data:
            lines.append(data["markdown"])
        else:
            lines.append(RENDERERS.get(name, _generic)(data))
        lines.append("")
    return "\n".join(lines)
