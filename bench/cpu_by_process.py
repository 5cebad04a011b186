"""CPU seconds spent by each part of the stack while a benchmark runs, per order placed.

    .venv/bin/python bench/cpu_by_process.py OUT.json &   # then run a benchmark, e.g.
    .venv/bin/python bench/projection_lag.py --rates 100 --seconds 60
    kill -INT %1; .venv/bin/python bench/cpu_by_process.py --per-order \\
        bench/results/projection_lag.json OUT.json

Samples /proc every 0.5 s until SIGINT/SIGTERM and groups processes by command line
(uvicorn, Celery worker, beat, PostgreSQL, the ES dev server, Redis, bench/), children
by their parent's group (uvicorn's workers, the worker's prefork children). Process
start-up counts too, so compare runs of the same length. Writes the CPU seconds per
group, the wall time and the machine's idle share; --per-order divides by the orders a
projection_lag result placed (its only rate).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stackproc import cpu_seconds  # noqa: E402


def group_of(command: str) -> str | None:
    if "uvicorn" in command:
        return "web"
    if "celery" in command:
        return "beat" if " beat" in command else "worker"
    if command.startswith("postgres"):
        return "postgresql"
    if "noida" in command or "elastic" in command:
        return "elasticsearch"
    if "redis-server" in command:
        return "redis"
    if "bench/" in command:
        return "bench"
    return None


def sample(seen: dict) -> None:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                parent = f.read().rsplit(")", 1)[1].split()[1]
        except OSError:
            continue  # gone meanwhile
        group = group_of(command) or seen.get(parent, [None])[0]  # else the parent's
        cpu = cpu_seconds([int(pid)])
        entry = seen.setdefault(pid, [group, cpu, cpu])
        entry[2] = cpu
        if group:
            entry[0] = group  # a child seen before its exec is regrouped


def idle_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)


def record(out: str) -> None:
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    seen: dict = {}
    started, (idle0, total0) = time.monotonic(), idle_ticks()
    while not stopping:
        sample(seen)
        time.sleep(0.5)
    sample(seen)
    idle1, total1 = idle_ticks()
    cpu: dict = {}
    for group, first, last in seen.values():
        if group:
            cpu[group] = round(cpu.get(group, 0) + last - first, 2)
    result = {"cpu_seconds": cpu, "wall_seconds": round(time.monotonic() - started, 1),
              "idle_pct": round(100 * (idle1 - idle0) / max(1, total1 - total0), 1)}
    with open(out, "w") as f:
        json.dump(result, f, indent=2)


def per_order(lag_json: str, cpu_json: str) -> None:
    with open(lag_json) as f:
        (rate,) = json.load(f)["rates"].values()
    with open(cpu_json) as f:
        cpu = json.load(f)
    orders = rate["orders"]
    print(f"{orders} orders, {rate['achieved_rate']}/s placed, idle {cpu['idle_pct']}%")
    for group, seconds in sorted(cpu["cpu_seconds"].items()):
        print(f"  {group:<14} {1000 * seconds / orders:6.2f} ms per order")


if __name__ == "__main__":
    if sys.argv[1] == "--per-order":
        per_order(sys.argv[2], sys.argv[3])
    else:
        record(sys.argv[1])
