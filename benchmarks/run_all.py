"""Run every benchmark, then gather their figures in ``benchmarks/results/summary.json``.

Run (from the repository root; about four minutes on a 2-core machine)::

    .venv/bin/python benchmarks/run_all.py
    .venv/bin/python benchmarks/run_all.py --quick                  # under a minute
    .venv/bin/python benchmarks/run_all.py --only bench_batch,bench_download

Each benchmark runs as its own process (``bench_batch.py``, ``bench_memory.py``,
``bench_download.py``, ``bench_callbacks.py``; see their docstrings), prints its table and writes
``benchmarks/results/<name>.json``; this script then collects every target,
prints one PASS/MISS list, and exits 0 whatever the verdicts: the figures are
for the README, not a gate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence

from _common import BENCH_DIR, RESULTS_DIR, Json, environment, write_results

BENCHMARKS = ("bench_batch", "bench_memory", "bench_download", "bench_callbacks")


def run(name: str, extra: Sequence[str]) -> float:
    """Run one benchmark in its own process, its output shown as it goes; returns seconds."""
    print(f"\n=== {name} {' '.join(extra)}".rstrip(), flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, str(BENCH_DIR / f"{name}.py"), *extra], check=True)
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="run all benchmarks and write summary.json")
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset")
    opts = parser.parse_args(argv)
    names = [name for name in opts.only.split(",") if name]
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmarks: {sorted(unknown)}")
    extra = ["--quick"] if opts.quick else []
    summary: Json = {"environment": environment(), "quick": opts.quick, "benchmarks": {}}
    targets: list[Json] = []
    for name in names:
        seconds = run(name, extra)
        data = json.loads((RESULTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
        summary["benchmarks"][name] = {
            "seconds_to_run": seconds,
            "settings": data["settings"],
            "results": data["results"],
            "targets": data["targets"],
        }
        targets += [{"benchmark": name, **target} for target in data["targets"]]
    summary["targets"] = targets
    summary["all_targets_met"] = all(target["passed"] for target in targets)
    print("\n=== targets")
    for target in targets:
        verdict = "PASS" if target["passed"] else "MISS"
        print(
            f"{verdict}  {target['benchmark']}: {target['name']}: {target['value']:.4g} "
            f"{target['comparison']} {target['limit']:.4g} {target['unit']}".rstrip()
        )
    print(f"\nwrote {write_results('summary', summary)}")


if __name__ == "__main__":
    main()
