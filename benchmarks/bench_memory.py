"""Memory benchmark: 10,000 jobs through one asyncvideo ``generate_many``.

Run (from the repository root; about a minute and a half on a 2-core machine)::

    .venv/bin/python benchmarks/bench_memory.py
    .venv/bin/python benchmarks/bench_memory.py --quick             # 2,000 jobs, 20 s
    .venv/bin/python benchmarks/bench_memory.py --runs 10000:1.0    # one setting only

One asyncvideo process (``Client(limits=Limits(max_active_jobs=N))`` and the
default poll schedule, scaled like the gateway) runs 10,000 jobs through
``generate_many`` against a FakeGateway in a process of its own, with tiny
4 KiB videos and 20-30 simulated seconds per job. Each run is
``ACTIVE:TIME_SCALE``; the default is two runs:

- ``10000:1.0``: jobs of 20-30 s of real time, long enough that the client
  has submitted all 10,000 before the first one ends, so all are in flight
  at once (the table shows when the last create was answered: ~7 s here);
- ``2000:0.25``: jobs of 5-7.5 s, five waves of 2,000.

It reports the client's RSS after imports and client construction ("idle"),
its peak RSS (``ru_maxrss``), the most jobs the gateway saw unfinished at
once, the memory per job in flight, and the wall time. Target: peak RSS
<= 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _common import (
    Column,
    Json,
    Meter,
    Target,
    dispatch,
    emit_child_result,
    environment,
    format_table,
    gateway_process,
    run_child,
    run_profiled,
    write_results,
)

PEAK_RSS_TARGET_MB = 300.0


# -- the child --------------------------------------------------------------------------------


async def _run(opts: argparse.Namespace, out: Path, meter: Meter) -> Json:
    from asyncvideo import Client, Event, Limits, PollPolicy, SubmittedEvent, VideoRequest

    client = Client(
        api_key=opts.key,
        base_url=opts.url,
        limits=Limits(max_active_jobs=opts.active),
        poll_policy=PollPolicy().scaled(opts.time_scale),
    )
    # A generator: the batch reads it lazily, as it would a 100,000-line prompt file.
    requests = (
        VideoRequest(prompt=f"memory benchmark clip {index}", model="sora-2")
        for index in range(opts.jobs)
    )
    ok = failed = 0
    last_submit = 0.0

    def on_event(event: Event) -> None:
        nonlocal last_submit
        if isinstance(event, SubmittedEvent):
            last_submit = time.perf_counter()

    meter.start()
    started = time.perf_counter()
    async with client:
        async for outcome in client.generate_many(requests, output_dir=out, on_event=on_event):
            if outcome.ok:
                ok += 1
            else:
                failed += 1
                if failed <= 5:
                    print(f"job {outcome.index} failed: {outcome.error!r}", file=sys.stderr)
    meter.stop()
    return {"ok": ok, "failed": failed, "all_submitted_s": last_submit - started}


def child_main(opts: argparse.Namespace) -> None:
    meter = Meter()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:

        def work() -> Json:
            counts = asyncio.run(_run(opts, Path(tmp), meter))
            return {**meter.to_dict(), **counts}

        result = run_profiled(work, opts.profile_to)
    result["active"] = opts.active
    emit_child_result(result)


# -- the parent -------------------------------------------------------------------------------

COLUMNS = (
    Column("active", "max_active_jobs"),
    Column("time_scale", "time scale", "{:g}"),
    Column("ok", "ok"),
    Column("max_in_flight", "most jobs in flight"),
    Column("wall_s", "wall s", "{:.1f}"),
    Column("all_submitted_s", "all submitted at s", "{:.1f}"),
    Column("idle_rss_mb", "idle RSS MB", "{:.1f}"),
    Column("peak_rss_mb", "peak RSS MB", "{:.1f}"),
    Column("kib_per_job", "KiB per job in flight", "{:.1f}"),
    Column("cpu_ms_per_job", "CPU ms/job", "{:.2f}"),
    Column("req_per_job", "req/job", "{:.2f}"),
)


def parent_main(opts: argparse.Namespace) -> Json:
    gateway_options = [
        "--duration",
        *(str(value) for value in opts.duration),
        "--video-bytes",
        str(opts.video_bytes),
        "--vocabulary",
        "openai",
    ]
    rows: list[Json] = []
    with gateway_process(gateway_options) as gateway:
        for active, scale in opts.runs:
            gateway.begin()
            print(
                f"running {opts.jobs} jobs, max_active_jobs={active}, scale {scale} ...", flush=True
            )
            args = [
                "--child",
                "--url",
                gateway.url,
                "--key",
                gateway.api_key,
                "--jobs",
                str(opts.jobs),
                "--active",
                str(active),
                "--time-scale",
                str(scale),
            ]
            if opts.profile_to:
                args += ["--profile-to", f"{opts.profile_to}.{active}"]
            gateway.configure(time_scale=scale)
            child = run_child(Path(__file__), args)
            stats = gateway.stats()
            gateway.new_run_times()
            in_flight = max(stats["max_active_tasks"].values(), default=0)
            growth = max(0.0, child["peak_rss_mb"] - child["rss_at_start_mb"])
            rows.append(
                {
                    "active": active,
                    "time_scale": scale,
                    "ok": child["ok"],
                    "failed": child["failed"],
                    "max_in_flight": in_flight,
                    "wall_s": child["wall_s"],
                    "all_submitted_s": child["all_submitted_s"],
                    "idle_rss_mb": child["rss_at_start_mb"],
                    "peak_rss_mb": child["peak_rss_mb"],
                    "kib_per_job": growth * 1024 / in_flight if in_flight else None,
                    "cpu_s": child["cpu_s"],
                    "cpu_ms_per_job": child["cpu_s"] / opts.jobs * 1000,
                    "req_per_job": stats["total_requests"] / opts.jobs,
                    "non_2xx": {
                        code: n
                        for code, n in stats["responses"].items()
                        if not code.startswith("2")
                    },
                }
            )
    found = [
        Target(
            f"peak RSS, {row['active']} active",
            row["peak_rss_mb"],
            PEAK_RSS_TARGET_MB,
            unit="MB",
            note=f"{row['max_in_flight']} jobs in flight at most; {row['ok']}/{opts.jobs} ok",
        )
        for row in rows
    ]
    print()
    print(
        f"bench_memory: {opts.jobs} jobs of {opts.duration[0]:g}-{opts.duration[1]:g} "
        f"simulated s (x time scale), {opts.video_bytes // 1024} KiB videos"
    )
    print(format_table(rows, COLUMNS))
    print()
    for target in found:
        print(target.line())
    data: Json = {
        "benchmark": "bench_memory",
        "settings": {
            "jobs": opts.jobs,
            "runs": [{"active": active, "time_scale": scale} for active, scale in opts.runs],
            "durations_simulated_s": list(opts.duration),
            "video_bytes": opts.video_bytes,
        },
        "environment": environment(),
        "results": rows,
        "targets": [target.to_dict() for target in found],
    }
    print(f"\nwrote {write_results('bench_memory', data)}")
    return data


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="peak RSS of 10,000 jobs in one process")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument(
        "--runs",
        default="10000:1.0,2000:0.25",
        help="comma-separated ACTIVE:TIME_SCALE runs (max_active_jobs and gateway time scale)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        nargs=2,
        default=(20.0, 30.0),
        metavar=("LOW", "HIGH"),
        help="simulated seconds per job (times --time-scale for wall time)",
    )
    parser.add_argument("--video-bytes", type=int, default=4096)
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, 2,000 active, 0.25 scale")
    parser.add_argument("--profile-to", help="cProfile the child; stats to this path + .N")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--active", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--time-scale", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    return parser


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    opts = _parser().parse_args(argv)
    if opts.child:
        return opts
    runs = []
    for run in opts.runs.split(","):
        active, _, scale = run.partition(":")
        runs.append((int(active), float(scale or 1.0)))
    opts.runs = runs
    if opts.quick:
        opts.jobs = min(opts.jobs, 2000)
        opts.runs = [(opts.jobs, 0.25)]
    return opts


def main(argv: Sequence[str] | None = None) -> None:
    dispatch(parse_options(argv), child_main, parent_main)


if __name__ == "__main__":
    main()
