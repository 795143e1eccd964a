"""Streaming memory benchmark: ``client.open_video`` of 20 MB and 200 MB videos.

Run (from the repository root; about ten seconds on a 2-core machine)::

    .venv/bin/python benchmarks/stream_memory.py
    .venv/bin/python benchmarks/stream_memory.py --sizes-mb 20 200 2000
    .venv/bin/python benchmarks/stream_memory.py --streams 4     # four at once
    .venv/bin/python benchmarks/stream_memory.py --quick         # 20 MB and 100 MB

A FakeGateway runs in a process of its own (jobs finish at once; openai
vocabulary, so the videos come from the API's content endpoint). For each
size, a child process creates ``--streams`` tasks (not measured), resets its
peak-RSS mark (``/proc/self/clear_refs``), notes its idle RSS, then reads
every video through ``async with client.open_video(job) as stream: async
for chunk in stream``, hashing the chunks and keeping none, as a web
handler passing the bytes on would. After the last child the parent checks
each hash against the gateway's bytes (not before: a child starts with its
parent's peak RSS, so the parent builds no video while children run).

Reported: MB/s, CPU ms per MB, idle RSS, peak RSS above idle (target <= 16
MB, the same at every size: memory does not grow with the file), and the
largest chunk the stream yielded.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path

from _common import (
    Column,
    Json,
    Meter,
    Target,
    current_rss_mb,
    dispatch,
    emit_child_result,
    environment,
    format_table,
    gateway_process,
    reset_peak_rss,
    run_child,
    write_results,
)

MIB = 1024 * 1024
RSS_TARGET_MB = 16.0


def peak_rss_mb() -> float:
    """The peak resident set since :func:`reset_peak_rss` (``VmHWM``).

    Not ``ru_maxrss``: Linux carries that over from the parent at fork and
    through exec, so a parent that once held a video would show in its child.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


# -- the child --------------------------------------------------------------------------------


async def _child(opts: argparse.Namespace, meter: Meter) -> Json:
    from asyncvideo import Client, Job, Limits

    client = Client(api_key=opts.key, base_url=opts.url, limits=Limits(max_downloads=opts.streams))
    async with client:
        jobs: list[Job] = []
        for index in range(opts.streams):
            job = await client.submit(prompt=f"stream benchmark {index}", model="sora-2")
            while not job.is_terminal:
                job = await client.refresh(job)
            jobs.append(job.raise_for_state())
        largest = 0

        async def read(job: Job) -> tuple[str, int, str, int | None]:
            nonlocal largest
            digest = hashlib.sha256()
            size = 0
            async with client.open_video(job) as stream:
                async for chunk in stream:
                    digest.update(chunk)
                    size += len(chunk)
                    largest = max(largest, len(chunk))
            return job.id, size, digest.hexdigest(), stream.content_length

        reset = reset_peak_rss()
        idle = current_rss_mb()
        meter.start()
        videos = await asyncio.gather(*(read(job) for job in jobs))
        meter.stop()
    return {
        "idle_rss_mb": idle,
        "peak_rss_mb": peak_rss_mb(),
        "peak_was_reset": reset,
        "largest_chunk": largest,
        "videos": [
            {"id": id_, "bytes": size, "sha256": sha, "content_length": length}
            for id_, size, sha, length in videos
        ],
    }


def child_main(opts: argparse.Namespace) -> None:
    meter = Meter()
    result = asyncio.run(_child(opts, meter))
    measured = meter.to_dict()
    measured.pop("peak_rss_mb")  # the streams' own peak is in ``result``
    emit_child_result({**measured, **result})


# -- the parent -------------------------------------------------------------------------------

COLUMNS = (
    Column("file_mb", "file MB", "{:g}"),
    Column("streams", "streams"),
    Column("wall_s", "wall s", "{:.2f}"),
    Column("mb_s", "MB/s", "{:.0f}"),
    Column("cpu_ms_per_mb", "CPU ms/MB", "{:.2f}"),
    Column("idle_rss_mb", "idle RSS MB", "{:.1f}"),
    Column("peak_rss_mb", "peak RSS MB", "{:.1f}"),
    Column("rss_above_idle_mb", "peak above idle MB", "{:.1f}"),
    Column("largest_chunk_kib", "largest chunk KiB", "{:.0f}"),
)


def _expected_sha256(size: int, task_id: str) -> str:
    from asyncvideo.testing import make_mp4

    return hashlib.sha256(make_mp4(size, task_id)).hexdigest()


def parent_main(opts: argparse.Namespace) -> Json:
    rows: list[Json] = []
    streamed: list[tuple[int, list[Json]]] = []
    options = ["--duration", "0", "0", "--vocabulary", "openai", "--chunk-size", str(opts.chunk)]
    with gateway_process(options) as gateway:
        for size_mb in opts.sizes_mb:
            file_bytes = int(size_mb * MIB)
            gateway.configure(video_bytes=file_bytes)
            gateway.begin()
            print(f"streaming {opts.streams} x {size_mb:g} MB ...", flush=True)
            args = [
                "--child", "--url", gateway.url, "--key", gateway.api_key,
                "--streams", str(opts.streams),
            ]  # fmt: skip
            child = run_child(Path(__file__), args)
            streamed.append((file_bytes, child["videos"]))
            total_mb = file_bytes * opts.streams / MIB
            rows.append(
                {
                    "file_mb": size_mb,
                    "streams": opts.streams,
                    "wall_s": child["wall_s"],
                    "mb_s": total_mb / child["wall_s"],
                    "cpu_s": child["cpu_s"],
                    "cpu_ms_per_mb": child["cpu_s"] * 1000 / total_mb,
                    "idle_rss_mb": child["idle_rss_mb"],
                    "peak_rss_mb": child["peak_rss_mb"],
                    "rss_above_idle_mb": max(0.0, child["peak_rss_mb"] - child["idle_rss_mb"]),
                    "peak_was_reset": child["peak_was_reset"],
                    "largest_chunk_kib": child["largest_chunk"] / 1024,
                    "requests": gateway.stats()["total_requests"],
                }
            )
    # Only now: a parent that built a video before starting a child would lend it its RSS.
    for file_bytes, videos in streamed:
        for video in videos:
            if (
                video["bytes"] != file_bytes
                or video["content_length"] != file_bytes
                or video["sha256"] != _expected_sha256(file_bytes, video["id"])
            ):
                raise RuntimeError(f"the stream of {video['id']} is not the video: {video}")
    found = [
        Target(
            f"{row['file_mb']:g} MB x {row['streams']}: peak RSS above idle",
            row["rss_above_idle_mb"],
            RSS_TARGET_MB,
            unit="MB",
            note=f"idle {row['idle_rss_mb']:.1f} MB",
        )
        for row in rows
    ]
    print()
    print(f"stream_memory: open_video, {opts.streams} at a time, bytes hashed and dropped")
    print(format_table(rows, COLUMNS))
    print()
    for target in found:
        print(target.line())
    data: Json = {
        "benchmark": "stream_memory",
        "settings": {
            "sizes_mb": opts.sizes_mb,
            "streams": opts.streams,
            "gateway_chunk_bytes": opts.chunk,
        },
        "environment": environment(),
        "results": rows,
        "targets": [target.to_dict() for target in found],
    }
    print(f"\nwrote {write_results('stream_memory', data)}")
    return data


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="peak RSS of open_video against file size")
    parser.add_argument(
        "--sizes-mb", type=float, nargs="+", default=[20.0, 200.0], help="one run per file size"
    )
    parser.add_argument("--streams", type=int, default=1, help="videos streamed at once")
    parser.add_argument("--quick", action="store_true", help="20 MB and 100 MB")
    parser.add_argument("--chunk", type=int, default=256 * 1024, help="gateway write size")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    return parser


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    opts = _parser().parse_args(argv)
    if opts.quick:
        opts.sizes_mb = [20.0, 100.0]
    return opts


def main(argv: Sequence[str] | None = None) -> None:
    dispatch(parse_options(argv), child_main, parent_main)


if __name__ == "__main__":
    main()
