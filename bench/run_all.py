"""`make bench`: every benchmark, repeated, medians written to docs/BENCHMARKS.md and JSON.

    .venv/bin/python bench/run_all.py [--repeats 3] [--quick] [--only A,B] [--reuse C,D]

Names: command_throughput, projection_lag, peer_comparison, read_strategies,
drain_rebuild, knee, soak, run_cost, session_reads, session_cpu, fleet_scaleout
(needs root: network namespaces; recorded as skipped without). Every server process is started
with shop.devstack's own command lines (bench/stackproc.py; session_reads runs
`shop.devstack run` itself), so the figures are those of the stack `make run` starts.

Each benchmark script writes bench/results/<name>.json; this runs each `--repeats`
times, takes the median of every number across the runs (same structure each run),
writes bench/results/all.json and renders docs/BENCHMARKS.md. `--quick` shortens
every run (for a smoke test of the whole pipeline; its numbers are not the report's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

FULL = {
    "command_throughput": ["--seconds", "15"],
    "projection_lag": ["--rates", "50,100,200", "--seconds", "60"],
    "peer_comparison": [],
    "read_strategies": ["--sizes", "10000,100000", "--reads", "1000", "--token-reads", "200"],
    "drain_rebuild": ["--sizes", "10000,100000", "--segments", "1,2,4"],
    "knee": ["--rates", "10,15,20,25,50,75,100", "--seconds", "20"],
    "soak": ["--rate", "50", "--seconds", "600"],
    "run_cost": ["--rows", "5000", "--small-runs", "300"],
    "session_reads": ["--n", "200"],
    "session_cpu": ["--n", "400", "--rounds", "4"],
    "fleet_scaleout": ["--orders", "6000", "--segments", "1,2,4", "--hosts", "1,2"],
}
# Run once whatever --repeats says: a ten-minute soak is its own repetition.
ONCE = {"soak"}
QUICK = {
    "command_throughput": ["--seconds", "3"],
    "projection_lag": ["--rates", "50", "--seconds", "5"],
    "peer_comparison": ["--quick"],
    "read_strategies": ["--sizes", "2000", "--reads", "200", "--token-reads", "30"],
    "drain_rebuild": ["--sizes", "2000", "--segments", "1,2"],
    "knee": ["--smoke"],
    "soak": ["--smoke"],
    "run_cost": ["--smoke"],
    "session_reads": ["--n", "10"],
    "session_cpu": ["--n", "20", "--rounds", "1"],
    "fleet_scaleout": ["--orders", "500", "--segments", "2", "--hosts", "1,2"],
}


def median_merge(runs: list):
    """Median of every number across runs of the same structure; the rest from run one."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: median_merge([r[k] for r in runs if isinstance(r, dict) and k in r])
                for k in first}
    if isinstance(first, list):
        if all(isinstance(r, list) and len(r) == len(first) for r in runs):
            return [median_merge([r[i] for r in runs]) for i in range(len(first))]
        return first
    if isinstance(first, bool) or not isinstance(first, int | float):
        return first
    numbers = [r for r in runs if isinstance(r, int | float) and not isinstance(r, bool)]
    value = statistics.median(numbers)
    return round(value, 3) if isinstance(value, float) else value


def run(name: str, args: list[str], repeats: int) -> dict:
    script = HERE / f"{name}.py"
    if not script.exists():
        return {"missing": True}
    runs = []
    for attempt in range(repeats):
        print(f"\n### {name} (run {attempt + 1} of {repeats})", flush=True)
        import benchdb

        print(f"(dropped {benchdb.drop_benchmark_indices()} benchmark indices first)", flush=True)
        started = time.monotonic()
        subprocess.run([sys.executable, str(script), *args], cwd=ROOT, check=True)
        runs.append(json.loads((RESULTS / f"{name}.json").read_text()))
        print(f"### {name} took {time.monotonic() - started:.0f} s", flush=True)
    merged = median_merge(runs)
    merged["runs"] = repeats
    merged["measured"] = datetime.now(UTC).isoformat(timespec="seconds")
    return merged


def reuse(name: str) -> dict:
    """The last result a benchmark script wrote, kept as it is.

    When it was measured, and over how many runs, come from the last record (all.json):
    a result file's mtime is only when it was checked out, in a fresh clone.
    """
    path = RESULTS / f"{name}.json"
    data = json.loads(path.read_text())
    record = RESULTS / "all.json"
    previous = (json.loads(record.read_text()).get("results", {}).get(name, {})
                if record.exists() else {})
    data.setdefault("runs", previous.get("runs", 1))
    data.setdefault("measured", previous.get("measured")
                    or datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds"))
    return data


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help="comma-separated benchmark names")
    parser.add_argument("--reuse", default="",
                        help="comma-separated benchmark names whose last result "
                             "(bench/results/<name>.json) goes into the report without a new run")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    reused = [name for name in args.reuse.split(",") if name]
    if args.only:
        plan = {k: v for k, v in plan.items() if k in args.only.split(",") or k in reused}
    import benchdb

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["make bench" + (" (quick)" if args.quick else ""),
                             *([f"BENCH_ARGS='{' '.join(sys.argv[1:])}'"] if sys.argv[1:]
                               else [])]),
        "repeats": args.repeats,
        "machine": benchdb.machine(),
        "results": {name: reuse(name) if name in reused
                    else run(name, extra, 1 if name in ONCE else args.repeats)
                    for name, extra in plan.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "all.json").write_text(json.dumps(report, indent=2))
    from render import HAND_WRITTEN, render

    document = ROOT / "docs" / "BENCHMARKS.md"
    # Sections of benchmarks that run_all does not run stay as they were.
    kept = document.read_text().partition(HAND_WRITTEN)[2] if document.exists() else ""
    document.write_text(render(report) + (f"\n{HAND_WRITTEN}{kept}" if kept else ""))
    print(f"\nwrote {RESULTS / 'all.json'} and docs/BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
