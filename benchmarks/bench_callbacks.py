"""Callbacks benchmark: the same batch polled, and woken by the gateway's callbacks.

Run (from the repository root; about twenty seconds on a 2-core machine)::

    .venv/bin/python benchmarks/bench_callbacks.py
    .venv/bin/python benchmarks/bench_callbacks.py --quick          # 100 jobs, 50 at a time
    .venv/bin/python benchmarks/bench_callbacks.py --jobs 1000 --concurrency 200

A FakeGateway (``_gateway.py``) runs in a process of its own and each mode in
a process of its own (this script with ``--child``). Both modes run
``generate_many`` over the same ``viduq1`` jobs (uniform 20-60 simulated
seconds at ``time_scale`` 0.05, i.e. 1-3 s of wall time) with
``PollPolicy().scaled(0.05)``:

- ``polling``: a client without ``webhook_url``: the seeds' schedule.
- ``callbacks``: ``Client(webhook_url=...)`` pointing at a loopback aiohttp
  endpoint in the child that hands each callback to
  ``asyncvideo.webhooks.WebhookReceiver`` (which calls ``client.notify``); the
  gateway POSTs the callback when a task ends (its sweep looks every 10 ms
  of real time). Jobs are then polled at the safety interval
  (``callback_interval``, 60 s x 0.05 = 3 s) and woken by each callback.

Columns: ``req/job`` counts create + status + content + CDN requests at the
gateway, ``polls/job`` the status requests alone; ``to download`` is the
time from the task's end on the gateway (its ``ends_at``, on the machine's
monotonic clock, which both processes read) to the poll that confirms it
(the download is queued at that moment and starts when a download slot is
free), median and 95th percentile, in wall milliseconds; ``simulated s`` is the
same median in simulated seconds (wall / time scale), what it would be on a real
gateway with the real schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from _common import (
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
    run_child,
    write_results,
)

if TYPE_CHECKING:
    from aiohttp import web

    from asyncvideo import Client

MODES = ("polling", "callbacks")
MODEL = "viduq1"


# -- the modes (children) ---------------------------------------------------------------------


async def _receiver(client_box: list[Client]) -> tuple[str, web.AppRunner]:
    """A loopback endpoint handing each callback to the SDK's receiver; (url, runner)."""
    from aiohttp import web

    from asyncvideo.webhooks import WebhookReceiver

    receivers: list[WebhookReceiver] = []

    async def handle(request: web.Request) -> web.Response:
        if not receivers:  # the client exists only once the URL is known
            receivers.append(WebhookReceiver(client_box[0]))
        result = await receivers[0].handle(await request.read(), request.headers, request.query)
        return web.Response(status=result.status)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}/hook", runner


async def _run(opts: argparse.Namespace, out: Path, meter: Meter) -> dict[str, float]:
    from asyncvideo import (
        Client,
        JobState,
        Limits,
        PollPolicy,
        StateChangedEvent,
        VideoRequest,
    )

    confirmed: dict[str, float] = {}

    def on_event(event: object) -> None:
        if isinstance(event, StateChangedEvent) and event.job.state is JobState.SUCCEEDED:
            confirmed.setdefault(event.job.id, time.monotonic())

    box: list[Client] = []
    webhook_url: str | None = None
    runner: web.AppRunner | None = None
    if opts.child == "callbacks":
        webhook_url, runner = await _receiver(box)
    client = Client(
        api_key=opts.key,
        base_url=opts.url,
        limits=Limits(max_active_jobs=opts.concurrency),
        poll_policy=PollPolicy().scaled(opts.time_scale),
        webhook_url=webhook_url,
    )
    box.append(client)
    requests = (
        VideoRequest(prompt=f"clip {index}: a lighthouse at dusk", model=MODEL)
        for index in range(opts.jobs)
    )
    meter.start()
    async with client:
        async for outcome in client.generate_many(requests, output_dir=out, on_event=on_event):
            if outcome.error is not None:
                print(f"{opts.child}: job {outcome.index} failed: {outcome.error}", file=sys.stderr)
    meter.stop()
    if runner is not None:
        await runner.cleanup()
    return confirmed


def child_main(opts: argparse.Namespace) -> None:
    meter = Meter()
    with tempfile.TemporaryDirectory(prefix=f"bench-{opts.child}-") as tmp:
        out = Path(tmp)
        confirmed = asyncio.run(_run(opts, out, meter))
        files = sum(1 for path in out.iterdir() if path.suffix == ".mp4")
    emit_child_result({**meter.to_dict(), "mode": opts.child, "files": files, "seen": confirmed})


# -- the parent -------------------------------------------------------------------------------


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else 0.0


def summarize(
    mode: str, child: Json, stats: Json, ends: dict[str, float], opts: argparse.Namespace
) -> Json:
    jobs = opts.jobs
    requests = stats["requests"]
    counted = sum(requests[kind] for kind in ("create", "status", "content", "cdn"))
    lags = [seen - ends[task_id] for task_id, seen in child["seen"].items() if task_id in ends]
    median = statistics.median(lags) if lags else 0.0
    return {
        "mode": mode,
        "ok": child["files"],
        "wall_s": child["wall_s"],
        "cpu_ms_per_job": child["cpu_s"] / jobs * 1000,
        "req_per_job": counted / jobs,
        "polls_per_job": requests["status"] / jobs,
        "lag_median_ms": median * 1000,
        "lag_p95_ms": _percentile(lags, 0.95) * 1000,
        "lag_median_simulated_s": median / opts.time_scale,
        "callbacks_delivered": stats.get("webhook_deliveries", 0),
    }


COLUMNS = (
    Column("mode", "mode"),
    Column("ok", "ok"),
    Column("wall_s", "wall s", "{:.2f}"),
    Column("req_per_job", "req/job", "{:.2f}"),
    Column("polls_per_job", "polls/job", "{:.2f}"),
    Column("lag_median_ms", "to download ms (median)", "{:.0f}"),
    Column("lag_p95_ms", "p95 ms", "{:.0f}"),
    Column("lag_median_simulated_s", "simulated s", "{:.2f}"),
    Column("cpu_ms_per_job", "CPU ms/job", "{:.2f}"),
    Column("callbacks_delivered", "callbacks", "{}"),
)


def targets(rows: dict[str, Json]) -> list[Target]:
    found: list[Target] = []
    hooked = rows.get("callbacks")
    if hooked is None:
        return found
    found.append(
        Target(
            "callbacks: status requests per job",
            hooked["polls_per_job"],
            1.25,
            note="one confirming poll per job, plus safety polls of the longest jobs",
        )
    )
    polled = rows.get("polling")
    if polled is not None:
        found.append(
            Target(
                "callbacks: completion -> download median <= polling's / 4",
                hooked["lag_median_ms"],
                polled["lag_median_ms"] / 4,
                unit="ms",
                note=f"polling {polled['lag_median_ms']:.0f} ms",
            )
        )
    return found


def _child_args(opts: argparse.Namespace, mode: str, gateway: Gateway) -> list[str]:
    return [
        "--child",
        mode,
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
    ]


def parent_main(opts: argparse.Namespace) -> Json:
    gateway_options = [
        "--time-scale",
        str(opts.time_scale),
        "--duration",
        *(str(value) for value in opts.duration),
        "--video-bytes",
        str(opts.video_kib * 1024),
        "--vocabulary",
        "native",
    ]
    rows: dict[str, Json] = {}
    with gateway_process(gateway_options) as gateway:
        for mode in opts.modes:
            gateway.begin()
            print(f"running {mode} ...", flush=True)
            child = run_child(Path(__file__), _child_args(opts, mode, gateway))
            rows[mode] = summarize(mode, child, gateway.stats(), gateway.new_task_ends(), opts)
    found = targets(rows)
    print()
    print(
        f"bench_callbacks: {opts.jobs} {MODEL} jobs, {opts.concurrency} at a time, durations "
        f"{opts.duration[0] * opts.time_scale:g}-{opts.duration[1] * opts.time_scale:g} s"
    )
    print(format_table(list(rows.values()), COLUMNS))
    print()
    for target in found:
        print(target.line())
    data: Json = {
        "benchmark": "bench_callbacks",
        "settings": {
            "jobs": opts.jobs,
            "concurrency": opts.concurrency,
            "time_scale": opts.time_scale,
            "durations_simulated_s": list(opts.duration),
            "video_bytes": opts.video_kib * 1024,
            "model": MODEL,
        },
        "environment": environment(),
        "results": rows,
        "targets": [target.to_dict() for target in found],
    }
    print(f"\nwrote {write_results('bench_callbacks', data)}")
    return data


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="a batch polled vs woken by callbacks")
    parser.add_argument("--jobs", type=int, default=400)
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
    parser.add_argument("--video-kib", type=int, default=64)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--quick", action="store_true", help="100 jobs, 50 at a time")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    return parser


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    opts = _parser().parse_args(argv)
    if opts.quick:
        opts.jobs, opts.concurrency = min(opts.jobs, 100), min(opts.concurrency, 50)
    opts.modes = contender_names(opts.modes, MODES)
    return opts


def main(argv: Sequence[str] | None = None) -> None:
    dispatch(parse_options(argv), child_main, parent_main)


if __name__ == "__main__":
    main()
