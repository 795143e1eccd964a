"""Batch benchmark: 1,000 jobs, 200 at a time, three clients side by side.

Run (from the repository root; about a minute on a 2-core machine)::

    .venv/bin/python benchmarks/bench_batch.py
    .venv/bin/python benchmarks/bench_batch.py --repeat 3           # median of 3 passes
    .venv/bin/python benchmarks/bench_batch.py --quick              # 200 jobs, 50 at a time
    .venv/bin/python benchmarks/bench_batch.py --jobs 400 --contenders asyncvideo,naive
    .venv/bin/python benchmarks/bench_batch.py --profile asyncvideo # cProfile the client

A FakeGateway (``_gateway.py``, openai vocabulary, which every contender
understands) runs in a process of its own; each contender runs in a process
of its own (this script with ``--child``), so CPU seconds (``getrusage``,
user + sys, all threads, imports excluded) and peak RSS are its client's
alone. Request counts come from the gateway's ``/_sim/stats``, zeroed before
each contender. Every contender gets the same 1,000 job durations in the same
order: uniform 20-60 simulated seconds at ``time_scale`` 0.05, i.e. 1-3 s of
wall time, and 256 KiB videos. Contenders:

- ``asyncvideo``: ``Client(limits=Limits(max_active_jobs=200),
  poll_policy=PollPolicy().scaled(0.05))`` and ``generate_many`` into a temp dir.
- ``openai``: ``AsyncOpenAI(base_url=url + "/v1").videos.create_and_poll(...,
  poll_interval_ms=...)``, then ``download_content`` and the bytes written
  to disk, 200 at a time under an ``asyncio.Semaphore``.
- ``naive``: plain aiohttp: multipart ``POST /v1/videos``, then ``sleep;
  GET /v1/videos/{id}`` until completed, then ``GET .../content`` streamed
  to disk, 200 at a time under an ``asyncio.Semaphore``.

Poll interval of ``openai`` and ``naive``: by default 0.25 s, the scaled
schedule's first-step interval (5 s x 0.05). It gives about as many polls per
job as asyncvideo's schedule (~8.5 vs ~8.1 for these durations), so CPU per
job compares like with like. (The issue's reference figures polled every
second unscaled; ``--interval 0.05`` reproduces that, at ~40 polls per job.)

Columns: ``CPU ms/job`` (= CPU s per 1,000 jobs) is the client's user + sys
time over the run divided by the jobs, ``sys CPU s`` its kernel share;
``req/job`` counts create + status + content + CDN requests at the gateway;
``min req/job`` is what the contender's own schedule needs at least (for
asyncvideo: the mean of ``PollPolicy.minimum_polls`` over the real durations,
+1 create +1 download); ``dl MB/s`` is MiB of video over the whole wall time
(downloads overlap the polling, so it is a throughput, not a link speed);
``gateway CPU s`` is what the gateway process burned meanwhile (it shares
the 2 cores with the client).

Ideal wall time: the jobs' real durations packed greedily onto 200 slots in
creation order (no client overhead, instant completion), plus one poll
interval (asyncvideo: its schedule's interval where the longest job ends,
0.5 s; openai and naive: their fixed interval); for a single wave this is
"the slowest job + one poll interval".
``sched`` is the same packing where each job holds its slot until the first
poll of its contender's schedule at or after its end: the best any client
following that schedule could do.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    RESULTS_DIR,
    Column,
    Gateway,
    Json,
    Meter,
    Target,
    contender_names,
    dispatch,
    emit_child_result,
    environment,
    format_table,
    gateway_process,
    name_list,
    run_child,
    run_profiled,
    write_results,
)

CONTENDERS = ("asyncvideo", "openai", "naive")
MODEL = "sora-2"
MIB = 1024 * 1024


# -- contenders (children) --------------------------------------------------------------------


def _prompt(index: int) -> str:
    return f"benchmark clip {index}: a lighthouse at dusk, slow pan"


def _files_on_disk(folder: Path) -> tuple[int, int]:
    files = [path for path in folder.iterdir() if path.suffix == ".mp4"]
    return len(files), sum(path.stat().st_size for path in files)


async def _run_asyncvideo(opts: argparse.Namespace, out: Path, meter: Meter) -> None:
    from asyncvideo import Client, Limits, PollPolicy, VideoRequest

    client = Client(
        api_key=opts.key,
        base_url=opts.url,
        limits=Limits(max_active_jobs=opts.concurrency),
        poll_policy=PollPolicy().scaled(opts.time_scale),
    )
    requests = (VideoRequest(prompt=_prompt(index), model=MODEL) for index in range(opts.jobs))
    meter.start()
    async with client:
        async for outcome in client.generate_many(requests, output_dir=out):
            if outcome.error is not None:
                print(f"asyncvideo: job {outcome.index} failed: {outcome.error}", file=sys.stderr)
    meter.stop()


async def _run_openai(opts: argparse.Namespace, out: Path, meter: Meter) -> None:
    # create_and_poll and download_content are marked deprecated (the Sora API's end date).
    warnings.simplefilter("ignore", DeprecationWarning)
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=opts.url + "/v1", api_key=opts.key)
    slots = asyncio.Semaphore(opts.concurrency)
    interval_ms = max(1, round(opts.interval * 1000))

    async def one(index: int) -> None:
        async with slots:
            video = await client.videos.create_and_poll(
                prompt=_prompt(index), model=MODEL, poll_interval_ms=interval_ms
            )
            if video.status != "completed":
                print(f"openai: job {index} ended {video.status}", file=sys.stderr)
                return
            content = await client.videos.download_content(video.id)
            # What the SDK's users write: the whole body, written inline.
            (out / f"{index:06d}_{video.id}.mp4").write_bytes(content.content)

    meter.start()
    async with client:
        await asyncio.gather(*(one(index) for index in range(opts.jobs)))
    meter.stop()


async def _run_naive(opts: argparse.Namespace, out: Path, meter: Meter) -> None:
    import aiohttp

    base = opts.url + "/v1/videos"
    slots = asyncio.Semaphore(opts.concurrency)

    async def one(session: aiohttp.ClientSession, index: int) -> None:
        async with slots:
            form = aiohttp.FormData(default_to_multipart=True)
            form.add_field("prompt", _prompt(index))
            form.add_field("model", MODEL)
            async with session.post(base, data=form) as response:
                response.raise_for_status()
                video = await response.json()
            while video["status"] not in ("completed", "failed"):
                await asyncio.sleep(opts.interval)
                async with session.get(f"{base}/{video['id']}") as response:
                    response.raise_for_status()
                    video = await response.json()
            if video["status"] != "completed":
                print(f"naive: job {index} failed", file=sys.stderr)
                return
            path = out / f"{index:06d}_{video['id']}.mp4"
            async with session.get(f"{base}/{video['id']}/content") as response:
                response.raise_for_status()
                # The plain loop: socket chunks straight to the page cache, inline.
                with open(path, "wb") as handle:  # noqa: ASYNC230
                    async for chunk in response.content.iter_chunked(64 * 1024):
                        handle.write(chunk)

    meter.start()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {opts.key}"}) as session:
        await asyncio.gather(*(one(session, index) for index in range(opts.jobs)))
    meter.stop()


_RUNNERS: dict[str, Callable[[argparse.Namespace, Path, Meter], Any]] = {
    "asyncvideo": _run_asyncvideo,
    "openai": _run_openai,
    "naive": _run_naive,
}


def child_main(opts: argparse.Namespace) -> None:
    meter = Meter()
    with tempfile.TemporaryDirectory(prefix=f"bench-{opts.child}-") as tmp:
        out = Path(tmp)

        def work() -> Json:
            asyncio.run(_RUNNERS[opts.child](opts, out, meter))
            return meter.to_dict()

        result = run_profiled(work, opts.profile_to)
        files, size = _files_on_disk(out)
    result.update(contender=opts.child, files=files, bytes=size)
    emit_child_result(result)


# -- the ideal and the schedule's minimum -----------------------------------------------------


def packed_makespan(holds: Sequence[float], slots: int) -> float:
    """When the last job ends if each takes the first free slot, in order, for ``holds[i]``."""
    free = [0.0] * min(slots, max(1, len(holds)))
    end = 0.0
    for hold in holds:
        start = heapq.heappop(free)
        heapq.heappush(free, start + hold)
        end = max(end, start + hold)
    return end


def _schedule(
    contender: str, opts: argparse.Namespace
) -> tuple[Callable[[float], float], Callable[[float], int], float]:
    """(first poll at or after a job's end, polls to see it end, interval at the end)."""
    if contender == "asyncvideo":
        from asyncvideo import PollPolicy

        policy = PollPolicy().scaled(opts.time_scale)

        def detect(duration: float) -> float:
            at = policy.first_delay
            while at < duration:
                at += policy.interval_at(at)
            return at

        longest = opts.duration[1] * opts.time_scale
        return detect, policy.minimum_polls, policy.interval_at(longest)

    interval = float(opts.interval)
    # create_and_poll asks once straight after the create; the naive loop sleeps first.
    extra = 1 if contender == "openai" else 0

    def fixed_polls(duration: float) -> int:
        return max(1, math.ceil(duration / interval - 1e-9)) + extra

    def fixed_detect(duration: float) -> float:
        return (fixed_polls(duration) - extra) * interval

    return fixed_detect, fixed_polls, interval


def summarize(
    contender: str, child: Json, stats: Json, run_times: Sequence[float], opts: argparse.Namespace
) -> Json:
    jobs = opts.jobs
    detect, polls, interval = _schedule(contender, opts)
    makespan = packed_makespan(run_times, opts.concurrency)
    ideal = makespan + interval
    sched = packed_makespan([detect(duration) for duration in run_times], opts.concurrency)
    requests = stats["requests"]
    counted = sum(requests[kind] for kind in ("create", "status", "content", "cdn"))
    minimum = statistics.fmean(polls(duration) for duration in run_times) + 2 if run_times else 0
    wall = child["wall_s"]
    return {
        "contender": contender,
        "ok": child["files"],
        "wall_s": wall,
        "ideal_s": ideal,
        "ratio": wall / ideal,
        "sched_ideal_s": sched,
        "sched_ratio": wall / sched,
        "makespan_s": makespan,
        "poll_interval_s": interval,
        "cpu_s": child["cpu_s"],
        "cpu_s_per_1000": child["cpu_s"] / jobs * 1000,
        "cpu_ms_per_job": child["cpu_s"] / jobs * 1000,
        "sys_cpu_s": child["sys_cpu_s"],
        "cpu_total_s": child["cpu_total_s"],
        "rss_at_start_mb": child["rss_at_start_mb"],
        "peak_rss_mb": child["peak_rss_mb"],
        "requests": counted,
        "req_per_job": counted / jobs,
        "creates_per_job": requests["create"] / jobs,
        "polls_per_job": requests["status"] / jobs,
        "downloads_per_job": (requests["content"] + requests["cdn"]) / jobs,
        "min_req_per_job": minimum,
        "max_in_flight": stats["max_in_flight"],
        "max_active_tasks": max(stats["max_active_tasks"].values(), default=0),
        "non_2xx": {code: n for code, n in stats["responses"].items() if not code.startswith("2")},
        "download_mb": child["bytes"] / MIB,
        "download_mb_s": child["bytes"] / MIB / wall,
        "gateway_cpu_s": child.get("gateway_cpu_s"),
    }


def targets(rows: dict[str, Json]) -> list[Target]:
    found: list[Target] = []
    ours = rows.get("asyncvideo")
    if ours is None:
        return found
    found.append(
        Target(
            "asyncvideo wall / ideal",
            ours["ratio"],
            1.10,
            unit="x",
            note=(
                f"{ours['wall_s']:.2f} s vs ideal {ours['ideal_s']:.2f} s; "
                f"vs its schedule's ideal {ours['sched_ratio']:.3f}x"
            ),
        )
    )
    if "openai" in rows:
        found.append(
            Target(
                "asyncvideo CPU/job <= openai/5",
                ours["cpu_ms_per_job"],
                rows["openai"]["cpu_ms_per_job"] / 5,
                unit="ms",
                note=f"openai {rows['openai']['cpu_ms_per_job']:.3f} ms/job",
            )
        )
    if "naive" in rows:
        found.append(
            Target(
                "asyncvideo CPU/job <= 2 x naive",
                ours["cpu_ms_per_job"],
                rows["naive"]["cpu_ms_per_job"] * 2,
                unit="ms",
                note=f"naive {rows['naive']['cpu_ms_per_job']:.3f} ms/job",
            )
        )
    found.append(
        Target(
            "asyncvideo requests/job <= schedule minimum + 1",
            ours["req_per_job"],
            ours["min_req_per_job"] + 1,
            note=f"schedule minimum {ours['min_req_per_job']:.2f}",
        )
    )
    return found


COLUMNS = (
    Column("contender", "contender"),
    Column("ok", "ok"),
    Column("wall_s", "wall s", "{:.2f}"),
    Column("ideal_s", "ideal s", "{:.2f}"),
    Column("ratio", "wall/ideal", "{:.3f}"),
    Column("sched_ratio", "wall/sched", "{:.3f}"),
    # CPU seconds per 1,000 jobs and CPU milliseconds per job are the same number.
    Column("cpu_ms_per_job", "CPU ms/job", "{:.2f}"),
    Column("sys_cpu_s", "sys CPU s", "{:.2f}"),
    Column("peak_rss_mb", "peak RSS MB", "{:.1f}"),
    Column("req_per_job", "req/job", "{:.2f}"),
    Column("polls_per_job", "polls/job", "{:.2f}"),
    Column("min_req_per_job", "min req/job", "{:.2f}"),
    Column("download_mb_s", "dl MB/s", "{:.1f}"),
    Column("gateway_cpu_s", "gateway CPU s", "{:.1f}"),
)


def _child_args(opts: argparse.Namespace, contender: str, gateway: Gateway) -> list[str]:
    args = [
        "--child",
        contender,
        "--url",
        gateway.url,
        "--key",
        gateway.api_key,
        "--jobs",
        str(opts.jobs),
        "--concurrency",
        str(opts.concurrency),
        "--time-scale",
        str(opts.time_scale),
        "--interval",
        str(opts.interval),
    ]
    if contender in opts.profile:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        args += ["--profile-to", str(RESULTS_DIR / f"bench_batch_{contender}.prof")]
    return args


def parent_main(opts: argparse.Namespace) -> Json:
    gateway_options = [
        "--time-scale",
        str(opts.time_scale),
        "--duration",
        *(str(value) for value in opts.duration),
        "--video-bytes",
        str(opts.video_kib * 1024),
        "--vocabulary",
        "openai",
    ]
    runs: list[Json] = []
    with gateway_process(gateway_options) as gateway:
        for repeat in range(opts.repeat):
            for contender in opts.contenders:
                gateway.begin()
                cpu_before = gateway.cpu_seconds()
                print(f"running {contender} (pass {repeat + 1}/{opts.repeat}) ...", flush=True)
                child = run_child(Path(__file__), _child_args(opts, contender, gateway))
                child["gateway_cpu_s"] = gateway.cpu_seconds() - cpu_before
                row = summarize(contender, child, gateway.stats(), gateway.new_run_times(), opts)
                row["pass"] = repeat + 1
                runs.append(row)
    # With --repeat, each figure is its median over the contender's passes.
    rows = {
        contender: median_row([row for row in runs if row["contender"] == contender])
        for contender in opts.contenders
    }
    found = targets(rows)
    print()
    print(
        f"bench_batch: {opts.jobs} jobs, {opts.concurrency} at a time, durations "
        f"{opts.duration[0] * opts.time_scale:g}-{opts.duration[1] * opts.time_scale:g} s, "
        f"{opts.video_kib} KiB videos, openai/naive poll every {opts.interval:g} s"
    )
    print(format_table(list(rows.values()), COLUMNS))
    print()
    for target in found:
        print(target.line())
    data: Json = {
        "benchmark": "bench_batch",
        "settings": {
            "jobs": opts.jobs,
            "concurrency": opts.concurrency,
            "time_scale": opts.time_scale,
            "durations_simulated_s": list(opts.duration),
            "video_bytes": opts.video_kib * 1024,
            "fixed_poll_interval_s": opts.interval,
            "repeat": opts.repeat,
        },
        "environment": environment(),
        "results": rows,
        "all_runs": runs,
        "targets": [target.to_dict() for target in found],
    }
    print(f"\nwrote {write_results('bench_batch', data)}")
    return data


def median_row(passes: Sequence[Json]) -> Json:
    """Every numeric figure as its median over ``passes``; anything else from the first."""
    row = dict(passes[0])
    row.pop("pass", None)
    for key, value in row.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            middle = statistics.median(p[key] for p in passes)
            row[key] = round(middle) if isinstance(value, int) else middle
    row["passes"] = len(passes)
    return row


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="asyncvideo vs openai vs a naive loop, 1,000 jobs")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--time-scale", type=float, default=0.05)
    parser.add_argument(
        "--duration",
        type=float,
        nargs=2,
        default=(20.0, 60.0),
        metavar=("LOW", "HIGH"),
        help="simulated seconds per job (times --time-scale for wall time)",
    )
    parser.add_argument("--video-kib", type=int, default=256)
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help="poll interval of openai and naive, wall seconds (default: 5 s x time scale)",
    )
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument(
        "--repeat", type=int, default=1, help="passes; each figure's median is reported"
    )
    parser.add_argument("--quick", action="store_true", help="200 jobs, 50 at a time")
    parser.add_argument(
        "--profile", default="", help="comma-separated contenders to run under cProfile"
    )
    # Child-side options (the parent passes these).
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    return parser


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    opts = _parser().parse_args(argv)
    if opts.quick:
        opts.jobs, opts.concurrency = min(opts.jobs, 200), min(opts.concurrency, 50)
    if opts.interval is None:
        opts.interval = 5.0 * opts.time_scale
    opts.contenders = contender_names(opts.contenders, CONTENDERS)
    opts.profile = name_list(opts.profile)
    return opts


def main(argv: Sequence[str] | None = None) -> None:
    dispatch(parse_options(argv), child_main, parent_main)


if __name__ == "__main__":
    main()
