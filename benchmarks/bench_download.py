"""Download benchmark: 32 files x 32 MB, 8 at a time, asyncvideo vs a raw aiohttp loop.

Run (from the repository root; about a minute on a 2-core machine)::

    .venv/bin/python benchmarks/bench_download.py
    .venv/bin/python benchmarks/bench_download.py --quick            # 8 files, one pass
    .venv/bin/python benchmarks/bench_download.py --sizes-mb 32 --repeat 9

A FakeGateway runs in a process of its own (jobs finish at once; openai
vocabulary, so videos come from the API's content endpoint). Each contender
runs in a process of its own: it creates its 32 tasks first (not timed), then
downloads them 8 at a time to a temp dir on the same disk, timed:

- ``asyncvideo``: ``Client(limits=Limits(max_downloads=8))``, all 32
  ``client.download(job, path)`` calls at once (the client's limit keeps 8
  in flight). It streams to ``<path>.part``, checks length and MP4 header,
  fsyncs and renames: the durable path.
- ``raw``: ``async with session.get(...)``, ``async for chunk in
  resp.content.iter_chunked(64 KiB): f.write(chunk)`` under a
  ``Semaphore(8)``; no fsync, so the bytes may still be in the page cache
  when the clock stops.
- ``raw_fsync``: the same loop plus ``fsync`` (in a worker thread) before
  closing each file: what asyncvideo guarantees, at the raw loop's cost.

Reported: MB/s (MiB of video per second of the download phase), asyncvideo's
share of each raw loop's rate (target >= 90% of ``raw``), and peak RSS above
idle (target <= 64 MB): idle RSS is measured in the child right before the
downloads, after its peak-RSS mark is reset (``/proc/self/clear_refs``), so
the peak is the downloads' own. It runs with 32 MB and with 8 MB files, to
show that memory does not grow with file size. Each contender runs
``--repeat`` times (interleaved); the table shows each one's median pass.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from _common import (
    Column,
    Json,
    Meter,
    Target,
    contender_names,
    current_rss_mb,
    dispatch,
    emit_child_result,
    environment,
    format_table,
    gateway_process,
    name_list,
    peak_rss_mb,
    reset_peak_rss,
    run_child,
    run_profiled,
    write_results,
)

CONTENDERS = ("asyncvideo", "raw", "raw_fsync")
MIB = 1024 * 1024
RATIO_TARGET = 0.90
RSS_TARGET_MB = 64.0
CHUNK = 64 * 1024

#: A contender's setup returns two of these: the timed downloads, then its cleanup.
#: Everything before (imports, creating the tasks) is not measured.
Step = Callable[[], Awaitable[None]]


async def _asyncvideo(opts: argparse.Namespace, out: Path) -> tuple[Step, Step]:
    from asyncvideo import Client, Job, Limits

    client = Client(
        api_key=opts.key, base_url=opts.url, limits=Limits(max_downloads=opts.concurrency)
    )
    jobs: list[Job] = []
    for index in range(opts.files):
        job = await client.submit(prompt=f"download benchmark {index}", model="sora-2")
        while not job.is_terminal:
            job = await client.refresh(job)
        jobs.append(job.raise_for_state())

    async def download_all() -> None:
        await asyncio.gather(
            *(client.download(job, out / f"{index:03d}.mp4") for index, job in enumerate(jobs))
        )

    return download_all, client.aclose


async def _raw(opts: argparse.Namespace, out: Path) -> tuple[Step, Step]:
    import aiohttp

    session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {opts.key}"})
    base = opts.url + "/v1/videos"
    ids: list[str] = []
    for index in range(opts.files):
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("prompt", f"download benchmark {index}")
        form.add_field("model", "sora-2")
        async with session.post(base, data=form) as response:
            response.raise_for_status()
            video = await response.json()
        while video["status"] not in ("completed", "failed"):
            async with session.get(f"{base}/{video['id']}") as response:
                video = await response.json()
        ids.append(video["id"])
    slots = asyncio.Semaphore(opts.concurrency)
    durable = opts.child == "raw_fsync"

    async def one(index: int, video_id: str) -> None:
        async with slots, session.get(f"{base}/{video_id}/content") as response:
            response.raise_for_status()
            # The plain loop writes inline, as most scripts do (page-cache writes are fast).
            handle = open(out / f"{index:03d}.mp4", "wb")  # noqa: ASYNC230, SIM115
            try:
                async for chunk in response.content.iter_chunked(CHUNK):
                    handle.write(chunk)
                if durable:
                    handle.flush()
                    await asyncio.to_thread(os.fsync, handle.fileno())
            finally:
                handle.close()

    async def download_all() -> None:
        await asyncio.gather(*(one(index, video_id) for index, video_id in enumerate(ids)))

    return download_all, session.close


async def _child(opts: argparse.Namespace, out: Path, meter: Meter) -> Json:
    prepare = _asyncvideo if opts.child == "asyncvideo" else _raw
    download_all, close = await prepare(opts, out)
    try:
        reset = reset_peak_rss()
        idle = current_rss_mb()
        meter.start()
        await download_all()
        meter.stop()
    finally:
        await close()
    return {
        "idle_rss_mb": idle,
        "peak_rss_mb": peak_rss_mb(),
        "peak_was_reset": reset,
    }


def child_main(opts: argparse.Namespace) -> None:
    meter = Meter()
    with tempfile.TemporaryDirectory(prefix=f"bench-download-{opts.child}-") as tmp:

        def work() -> Json:
            result = asyncio.run(_child(opts, Path(tmp), meter))
            measured = meter.to_dict()
            measured.pop("peak_rss_mb")  # the downloads' own peak is in ``result``
            return {**measured, **result}

        result = run_profiled(work, opts.profile_to)
        sizes = [path.stat().st_size for path in Path(tmp).iterdir() if path.suffix == ".mp4"]
    result.update(
        files=len(sizes),
        bytes=sum(sizes),
        complete=all(size == opts.file_bytes for size in sizes),
    )
    result["contender"] = opts.child
    emit_child_result(result)


# -- the parent -------------------------------------------------------------------------------

COLUMNS = (
    Column("file_mb", "file MB", "{:g}"),
    Column("contender", "contender"),
    Column("files", "files"),
    Column("wall_s", "wall s", "{:.2f}"),
    Column("mb_s", "MB/s", "{:.0f}"),
    Column("mb_s_spread", "MB/s all passes"),
    Column("vs_raw", "vs raw", "{:.0%}"),
    Column("vs_raw_fsync", "vs raw_fsync", "{:.0%}"),
    Column("cpu_s", "CPU s", "{:.2f}"),
    Column("cpu_ms_per_mb", "CPU ms/MB", "{:.2f}"),
    Column("idle_rss_mb", "idle RSS MB", "{:.1f}"),
    Column("rss_above_idle_mb", "peak above idle MB", "{:.1f}"),
)


def _median_pass(passes: list[Json]) -> Json:
    ordered = sorted(passes, key=lambda row: float(row["mb_s"]))
    row = dict(ordered[len(ordered) // 2])
    row["mb_s_spread"] = "/".join(f"{float(p['mb_s']):.0f}" for p in passes)
    row["rss_above_idle_mb"] = max(float(p["rss_above_idle_mb"]) for p in passes)
    return row


def parent_main(opts: argparse.Namespace) -> Json:
    rows: list[Json] = []
    runs: list[Json] = []
    found: list[Target] = []
    options = ["--duration", "0", "0", "--vocabulary", "openai", "--chunk-size", str(opts.chunk)]
    with gateway_process(options) as gateway:
        for size_mb in opts.sizes_mb:
            file_bytes = int(size_mb * MIB)
            gateway.configure(video_bytes=file_bytes)
            passes: dict[str, list[Json]] = {name: [] for name in opts.contenders}
            for repeat in range(opts.repeat):
                for contender in opts.contenders:
                    gateway.begin()
                    print(
                        f"{size_mb:g} MB x {opts.files}: {contender} "
                        f"(pass {repeat + 1}/{opts.repeat}) ...",
                        flush=True,
                    )
                    args = [
                        "--child", contender, "--url", gateway.url, "--key", gateway.api_key,
                        "--files", str(opts.files), "--concurrency", str(opts.concurrency),
                        "--file-bytes", str(file_bytes),
                    ]  # fmt: skip
                    if opts.profile and contender in opts.profile:
                        args += ["--profile-to", opts.profile_to or f"/tmp/{contender}.prof"]
                    child = run_child(Path(__file__), args)
                    if not child["complete"] or child["files"] != opts.files:
                        raise RuntimeError(f"{contender} did not download every file: {child}")
                    stats = gateway.stats()
                    row = {
                        "file_mb": size_mb,
                        "contender": contender,
                        "pass": repeat + 1,
                        "files": child["files"],
                        "wall_s": child["wall_s"],
                        "mb_s": child["bytes"] / MIB / child["wall_s"],
                        "cpu_s": child["cpu_s"],
                        "cpu_ms_per_mb": child["cpu_s"] * 1000 / (child["bytes"] / MIB),
                        "idle_rss_mb": child["idle_rss_mb"],
                        "peak_rss_mb": child["peak_rss_mb"],
                        "rss_above_idle_mb": max(0.0, child["peak_rss_mb"] - child["idle_rss_mb"]),
                        "peak_was_reset": child["peak_was_reset"],
                        "requests": stats["total_requests"],
                        "max_in_flight": stats["max_in_flight"],
                    }
                    passes[contender].append(row)
                    runs.append(row)
            medians = {name: _median_pass(rows_) for name, rows_ in passes.items()}
            for name, row in medians.items():
                for baseline in ("raw", "raw_fsync"):
                    if baseline in medians and name != baseline:
                        row[f"vs_{baseline}"] = row["mb_s"] / medians[baseline]["mb_s"]
                rows.append(row)
            ours = medians.get("asyncvideo")
            if ours is not None:
                if "raw" in medians:
                    found.append(
                        Target(
                            f"{size_mb:g} MB files: asyncvideo MB/s vs raw loop",
                            ours["vs_raw"],
                            RATIO_TARGET,
                            higher_is_better=True,
                            note=(
                                f"{ours['mb_s']:.0f} vs {medians['raw']['mb_s']:.0f} MB/s"
                                + (
                                    f"; vs raw_fsync {ours['vs_raw_fsync']:.0%}"
                                    if "vs_raw_fsync" in ours
                                    else ""
                                )
                            ),
                        )
                    )
                found.append(
                    Target(
                        f"{size_mb:g} MB files: asyncvideo peak RSS above idle",
                        ours["rss_above_idle_mb"],
                        RSS_TARGET_MB,
                        unit="MB",
                        note=f"idle {ours['idle_rss_mb']:.1f} MB; worst of {opts.repeat} passes",
                    )
                )
    print()
    print(
        f"bench_download: {opts.files} files, {opts.concurrency} at a time, "
        f"median of {opts.repeat} passes"
    )
    print(format_table(rows, COLUMNS))
    print()
    for target in found:
        print(target.line())
    data: Json = {
        "benchmark": "bench_download",
        "settings": {
            "files": opts.files,
            "concurrency": opts.concurrency,
            "sizes_mb": opts.sizes_mb,
            "repeat": opts.repeat,
            "raw_chunk_bytes": CHUNK,
            "gateway_chunk_bytes": opts.chunk,
        },
        "environment": environment(),
        "results": rows,
        "all_runs": runs,
        "targets": [target.to_dict() for target in found],
    }
    print(f"\nwrote {write_results('bench_download', data)}")
    return data


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="asyncvideo downloads vs a raw aiohttp loop")
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--sizes-mb", type=float, nargs="+", default=[32.0, 8.0], help="file sizes, one run each"
    )
    parser.add_argument("--repeat", type=int, default=5, help="passes; the median is reported")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--chunk", type=int, default=256 * 1024, help="gateway write size")
    parser.add_argument("--quick", action="store_true", help="8 files, one pass")
    parser.add_argument("--profile", default="", help="comma-separated contenders to cProfile")
    parser.add_argument("--profile-to", help="where the profile goes")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--file-bytes", type=int, help=argparse.SUPPRESS)
    return parser


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    opts = _parser().parse_args(argv)
    if opts.child:
        return opts
    if opts.quick:
        opts.files, opts.repeat = min(opts.files, 8), 1
    opts.contenders = contender_names(opts.contenders, CONTENDERS)
    opts.profile = name_list(opts.profile)
    return opts


def main(argv: Sequence[str] | None = None) -> None:
    dispatch(parse_options(argv), child_main, parent_main)


if __name__ == "__main__":
    main()
