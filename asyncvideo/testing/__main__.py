"""Run the FakeGateway standalone: ``python -m asyncvideo.testing --port 8000``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Sequence

from ._config import GatewayConfig
from ._gateway import FakeGateway


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m asyncvideo.testing",
        description="Serve a simulated video-generation gateway until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="API port (0 = any free port)")
    parser.add_argument("--cdn-port", type=int, default=0, help="CDN port (default: any free)")
    parser.add_argument("--api-key", default=GatewayConfig().api_key)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--vocabulary", choices=("native", "openai"), default="native")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=None, help="requests/s per key")
    parser.add_argument("--video-bytes", type=int, default=GatewayConfig().video_bytes)
    parser.add_argument(
        "--duration",
        type=float,
        nargs="+",
        metavar="SECONDS",
        help="simulated job length: one value, or LOW HIGH for a uniform range",
    )
    parser.add_argument("--poll-after-ms", type=int, default=None)
    parser.add_argument(
        "--latency", type=float, default=0.0, help="real seconds added to every request"
    )
    parser.add_argument(
        "--capture-requests", type=int, default=0, help="requests kept for inspection"
    )
    parser.add_argument(
        "--webhook-secret", default=None, help="sign callbacks (asyncvideo.webhooks' scheme)"
    )
    return parser


def _config(args: argparse.Namespace) -> GatewayConfig:
    durations = GatewayConfig().durations
    if args.duration:
        durations = args.duration[0] if len(args.duration) == 1 else tuple(args.duration[:2])
    return GatewayConfig(
        host=args.host,
        port=args.port,
        cdn_port=args.cdn_port,
        api_key=args.api_key,
        time_scale=args.time_scale,
        vocabulary=args.vocabulary,
        seed=args.seed,
        failure_rate=args.failure_rate,
        rate_limit=args.rate_limit,
        video_bytes=args.video_bytes,
        durations=durations,
        poll_after_ms=args.poll_after_ms,
        capture_requests=args.capture_requests,
        latency=args.latency,
        webhook_secret=args.webhook_secret,
    )


async def _serve(config: GatewayConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    async with FakeGateway(config) as gateway:
        print(f"FakeGateway serving at {gateway.url}", flush=True)
        print(f"  CDN:     {gateway.cdn_url}", flush=True)
        print(f"  API key: {gateway.api_key}", flush=True)
        print(f"  stats:   {gateway.url}/_sim/stats", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    config = _config(_parser().parse_args(argv))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config))


if __name__ == "__main__":
    main()
