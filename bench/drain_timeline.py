"""Who ran which segment when: a backlog drained by the shipped worker on one host, sampled.

    .venv/bin/python bench/drain_timeline.py [--orders 6000] [--segments 2] [--out FILE]

A throwaway shop (tests.support.fault_stack) on loopback, a backlog of orders placed
with no worker running, then the shipped worker command (concurrency 2). Every 20 ms:
the segment advisory locks held and by which PostgreSQL backend (one per worker
process), the Celery queue's length, and the checkpoints. Printed: each change of
holders, then how long each read model's segments held a lock in all, and how long
messages waited in the queue while both worker processes held a segment. That tells a
drain slowed by groups waiting their turn (the processes stay busy, the work takes as
long) from one slowed by the work itself (more lock time for the same rows). No root
needed: bench/fleet_scaleout.py measures the same over network namespaces.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from tests.support.fault_stack import Stack  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
# The same backlog and lock names as the multi-host measurement.
from fleet_scaleout import BACKLOG, VIEWS, _lock_keys  # noqa: E402


def sample(orders: int, segments: int) -> dict:
    stack = Stack(LOG_LEVEL="WARNING",
                  **{f"SEGMENTS_{name.upper()}": str(segments) for name in VIEWS})
    timeline = []
    try:
        stack.start(workers=0)
        stack.seed(customers=16, products=8)
        stack.manage("shell", "-c", BACKLOG.format(
            customers=stack.customers, products=list(stack.products), orders=orders))
        broker = redis.Redis(port=stack.redis.port, db=1)
        keys = _lock_keys(segments)
        wanted = 1 + len(VIEWS) * segments
        with stack.pg.connect() as conn:
            newest = conn.execute("SELECT xid::text::bigint, position FROM orders_outboxmessage "
                                  "ORDER BY xid DESC, position DESC LIMIT 1").fetchone()
            stack.start_worker("worker-0")
            started, first = time.monotonic(), None
            while True:
                now = time.monotonic()
                checkpoints = conn.execute(
                    "SELECT projector || '.' || segment, rows_projected, "
                    "(xid, position) >= (%s, %s) FROM readmodels_checkpoint", newest).fetchall()
                held = sorted(
                    (pid, keys.get((classid, objid), "other"))
                    for pid, classid, objid in conn.execute(
                        "SELECT pid, classid::bigint, objid::bigint FROM pg_locks "
                        "WHERE locktype = 'advisory' AND granted").fetchall())
                projected = sum(rows for _, rows, _ in checkpoints)
                if projected and first is None:
                    first = now
                timeline.append({"t": round(now - started, 3), "held": held,
                                 "queued": broker.llen("celery"), "projected": projected,
                                 "covered": sum(1 for *_, covers in checkpoints if covers)})
                if len(checkpoints) == wanted and all(c for *_, c in checkpoints):
                    break
                if now - started > 600:
                    raise SystemExit("no drain within 600 s")
                time.sleep(0.02)
    finally:
        stack.stop()
    seconds = now - first
    return {"segments": segments, "rows_projected": projected, "seconds": round(seconds, 2),
            "rows_per_second": round(projected / seconds), "timeline": timeline}


def summary(run: dict) -> dict:
    lock_seconds: Counter = Counter()
    queued_while_busy = 0.0
    for here, following in zip(run["timeline"], run["timeline"][1:], strict=False):
        spent = following["t"] - here["t"]
        for _, segment in here["held"]:
            lock_seconds[segment.rsplit(".", 1)[0]] += spent
        if len({pid for pid, _ in here["held"]}) >= 2 and here["queued"]:
            queued_while_busy += spent
    return {"lock_seconds": {k: round(v, 2) for k, v in sorted(lock_seconds.items())},
            "lock_seconds_total": round(sum(lock_seconds.values()), 2),
            "queued_while_both_processes_busy": round(queued_while_busy, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=6000)
    parser.add_argument("--segments", type=int, default=2)
    parser.add_argument("--out", help="write the whole timeline here (JSON)")
    args = parser.parse_args()
    run = sample(args.orders, args.segments)
    shown = None
    for point in run["timeline"]:
        if point["projected"] or point["held"]:
            now = (tuple(s for _, s in point["held"]), point["covered"])
            if now != shown:
                holders = ", ".join(f"{pid}:{s}" for pid, s in point["held"]) or "-"
                print(f"{point['t']:7.3f}s rows {point['projected']:>6} queued "
                      f"{point['queued']:>2} covered {point['covered']:>2}  {holders}")
                shown = now
    if args.out:
        Path(args.out).write_text(json.dumps(run) + "\n")
    print(json.dumps({k: v for k, v in run.items() if k != "timeline"} | summary(run)))


if __name__ == "__main__":
    main()
