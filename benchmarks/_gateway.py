"""Run a FakeGateway in a process of its own, for the benchmarks.

    .venv/bin/python benchmarks/_gateway.py --time-scale 0.05 --duration 20 60 \
        --video-bytes 262144 --vocabulary openai

The first stdout line is JSON: ``{"url", "cdn_url", "control_url", "api_key"}``.
It serves until its stdin closes (the parent exits) or SIGTERM/SIGINT.

Next to the gateway's own origins (API, CDN) it opens a control origin, so
the benchmark's bookkeeping never shows in the gateway's request counters:

- ``GET /tasks?since=N``: ``{"total", "run_times", "ends_at"}``, the wall-clock
  run time of every task from the N-th created on, in creation order (for the
  ideal wall time and the poll schedule's minimum requests), and when each
  ended by ``time.monotonic()`` (for the latency from completion to download);
- ``POST /rewind``: restart the sequence of job durations, so that every
  contender gets the same job lengths in the same order;
- ``GET /cpu``: the CPU seconds this process has used (the gateway competes
  with the client for the machine's cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import resource
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from asyncvideo.testing import FakeGateway, GatewayConfig


class Durations:
    """Simulated job lengths drawn from their own seeded stream, which can be rewound.

    The gateway's own random stream also draws task ids and CDN tokens, so
    reseeding it would not give two contenders the same jobs; this one does.
    """

    def __init__(self, low: float, high: float, seed: int) -> None:
        self._low = low
        self._high = high
        self._seed = seed
        self._rng = random.Random(seed)

    def rewind(self) -> None:
        self._rng = random.Random(self._seed)

    def __call__(self, model: str, rng: random.Random) -> float:
        return self._rng.uniform(self._low, self._high)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run a FakeGateway for the benchmarks.")
    parser.add_argument("--time-scale", type=float, default=0.05)
    parser.add_argument(
        "--duration",
        type=float,
        nargs=2,
        default=(20.0, 60.0),
        metavar=("LOW", "HIGH"),
        help="simulated seconds per job, uniform in [LOW, HIGH] (times --time-scale)",
    )
    parser.add_argument("--video-bytes", type=int, default=256 * 1024)
    parser.add_argument("--chunk-size", type=int, default=256 * 1024)
    parser.add_argument("--vocabulary", choices=("native", "openai"), default="openai")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--api-key", default="sk-bench")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    durations = Durations(args.duration[0], args.duration[1], args.seed)
    config = GatewayConfig(
        host="127.0.0.1",
        api_key=args.api_key,
        time_scale=args.time_scale,
        durations=durations,
        seed=args.seed,
        vocabulary=args.vocabulary,
        video_bytes=args.video_bytes,
        chunk_size=args.chunk_size,
        capture_requests=0,  # keeping request copies would be gateway work the client pays for
    )
    async with FakeGateway(config) as gateway:

        async def tasks(request: web.Request) -> web.Response:
            since = int(request.query.get("since", "0"))
            live = gateway.tasks
            new = list(itertools.islice(live.values(), since, None))
            run_times = [task.run_time for task in new]
            # CLOCK_MONOTONIC is machine-wide: a child compares these with its own readings.
            ends_at = {task.id: task.ends_at for task in new}
            return web.json_response(
                {"total": len(live), "run_times": run_times, "ends_at": ends_at}
            )

        async def rewind(request: web.Request) -> web.Response:
            durations.rewind()
            return web.json_response({"ok": True})

        async def cpu(request: web.Request) -> web.Response:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            return web.json_response({"cpu_s": usage.ru_utime + usage.ru_stime})

        control = web.Application()
        control.router.add_get("/tasks", tasks)
        control.router.add_post("/rewind", rewind)
        control.router.add_get("/cpu", cpu)
        runner = web.AppRunner(control, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        control_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            where = {
                "url": gateway.url,
                "cdn_url": gateway.cdn_url,
                "control_url": control_url,
                "api_key": gateway.api_key,
            }
            print(json.dumps(where), flush=True)
            await _until_stopped()
        finally:
            await runner.cleanup()


async def _until_stopped() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    # The parent holds our stdin open; EOF means it is gone, whatever way it went.
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    eof = asyncio.ensure_future(reader.read())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([eof, stopped], return_when=asyncio.FIRST_COMPLETED)
    for pending in (eof, stopped):
        pending.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
