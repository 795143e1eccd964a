"""Chaos benchmark: 1,000 jobs with every fault the simulator has, all at once.

Run (from the repository root; about a minute on a 2-core machine)::

    .venv/bin/python benchmarks/chaos.py
    .venv/bin/python benchmarks/chaos.py --jobs 200       # quicker

One ``generate_many`` against a FakeGateway in this process (new-api profile,
so Sora's content endpoint lags behind success), with, at the same time:

- 5xx on 5% of API requests; a request rate limit that answers 429, half the
  run with ``Retry-After`` and half without;
- creates whose connection is reset before the gateway processed them and
  after it did (the ambiguous case an idempotency key resolves);
- downloads cut short (one in eight), gzip-encoded videos (the first half;
  the second half unencoded, so cuts resume with ``Range``), a drip-fed CDN,
  and a content endpoint that says "not ready" for a while after success.

The client runs with a gateway profile that honours idempotency keys (the
FakeGateway does), so an ambiguous create is sent again with the same key and
must never make a second task. It reports faults injected by kind, requests
and retries, resumed downloads, every file checked by sha256 against the
bytes the gateway serves, duplicate creates, ambiguous creates reported,
and peak RSS. Targets: every server-side success present and verified, 0
duplicate creates.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import attrs
from _common import (
    Column,
    Json,
    duplicate_creates,
    file_sha256,
    format_table,
    peak_rss_mb,
    write_results,
)

from asyncvideo import (
    GATEWAYS,
    Client,
    Limits,
    PollPolicy,
    RetryPolicy,
    VideoRequest,
    errors,
)
from asyncvideo.testing import FakeGateway

SCALE = 0.05
MODELS = ("sora-2", "kling-v1")  # content endpoint (lag, gzip) and CDN (drip, cuts)


async def run(jobs: int) -> Json:
    gateway = FakeGateway(
        profile="new-api",
        time_scale=SCALE,
        durations=(20.0, 60.0),
        video_bytes=256 * 1024,
        chunk_size=16 * 1024,
        error_rate_5xx=0.05,
        rate_limit=400.0,
        retry_after="seconds",
        drop_download_after=100 * 1024,
        drop_download_rate=0.125,
        content_encoding="gzip",
        content_lag=40.0 * SCALE,
        cdn_chunk_delay=0.002,
        capture_requests=jobs * 40,
        seed=7,
    )
    profile = attrs.evolve(GATEWAYS["default"], honours_idempotency_keys=True)
    async with (
        gateway,
        Client(
            api_key=gateway.api_key,
            base_url=gateway.url,
            gateway=profile,
            poll_policy=PollPolicy().scaled(SCALE),
            retry_policy=RetryPolicy(max_attempts=8, base_delay=0.05, max_delay=1.0),
            limits=Limits(max_active_jobs=200),
            seed=7,
        ) as client,
    ):
        # Resets before and after the gateway made the task, interleaved.
        for _ in range(jobs // 20):
            gateway.script_failures("create", [0])
            gateway.script_failures("create", [0], after_processing=True)
        requests = (
            VideoRequest(prompt=f"chaos clip {i}", model=MODELS[i % 2]) for i in range(jobs)
        )
        started = time.perf_counter()
        outcomes = []
        with tempfile.TemporaryDirectory() as folder:
            async with client.generate_many(requests, output_dir=folder) as batch:
                async for outcome in batch:
                    outcomes.append(outcome)
                    if len(outcomes) == jobs // 2:
                        # The second half: 429s without a hint, and videos sent as they
                        # are, so a cut download resumes with Range instead of restarting.
                        gateway.set_config(retry_after="none", content_encoding="identity")
            wall = time.perf_counter() - started
            verified, mismatched = _verify(gateway, outcomes)
        return _report(gateway, client, outcomes, jobs, wall, verified, mismatched)


def _verify(gateway: FakeGateway, outcomes: list[object]) -> tuple[int, int]:
    verified = mismatched = 0
    for outcome in outcomes:
        path, job = outcome.path, outcome.job  # type: ignore[attr-defined]
        if path is None or job is None:
            continue
        served = hashlib.sha256(gateway.video_content(job.id)).hexdigest()
        saved = file_sha256(Path(path))
        if served == saved:
            verified += 1
        else:
            mismatched += 1
    return verified, mismatched


def _report(
    gateway: FakeGateway,
    client: Client,
    outcomes: list[object],
    jobs: int,
    wall: float,
    verified: int,
    mismatched: int,
) -> Json:
    stats = gateway.stats
    succeeded_on_server = sum(
        1 for task in gateway.tasks.values() if task.outcome.name == "SUCCEEDED"
    )
    errors_by_type = collections.Counter(
        type(o.error).__name__
        for o in outcomes
        if o.error is not None  # type: ignore[attr-defined]
    )
    requests = gateway.requests
    return {
        "jobs": jobs,
        "outcomes": len(outcomes),
        "ok": sum(1 for o in outcomes if o.ok),  # type: ignore[attr-defined]
        "errors": dict(errors_by_type),
        "error_samples": sorted(
            {
                f"{o.job.state.value if o.job else 'no job'}: {str(o.error)[:100]}"  # type: ignore[attr-defined]
                for o in outcomes
                if o.error is not None
            }  # type: ignore[attr-defined]
        )[:5],
        "wall_s": round(wall, 2),
        "faults": {
            "5xx": stats.server_errors,
            "429": stats.rate_limited,
            "dropped_connections": stats.dropped_connections,
            "not_ready_answers": sum(
                1 for r in requests if r.kind == "content" and r.status == 400
            ),
        },
        "requests": client.request_count,
        "requests_per_job": round(client.request_count / jobs, 2),
        "create_requests": stats.create_requests,
        "idempotency_replays": stats.idempotency_replays,
        "resumed_downloads": sum(1 for r in requests if "Range" in r.headers),
        "tasks_created": stats.creates,
        "tasks_succeeded_on_server": succeeded_on_server,
        "files_verified_sha256": verified,
        "files_mismatched": mismatched,
        "duplicate_creates": duplicate_creates(
            task.idempotency_key for task in gateway.tasks.values() if task.idempotency_key
        ),
        "ambiguous_creates_reported": errors_by_type.get(errors.CreateOutcomeUnknown.__name__, 0),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.jobs))
    rows = [{"figure": key, "value": str(value)} for key, value in result.items()]
    print(format_table(rows, _COLUMNS))
    ok = (
        result["files_verified_sha256"] == result["tasks_succeeded_on_server"]
        and result["duplicate_creates"] == 0
        and result["files_mismatched"] == 0
    )
    print(("PASS" if ok else "MISS") + ": every server-side success verified, 0 duplicate creates")
    print(f"wrote {write_results('chaos', result)}")
    sys.exit(0)


_COLUMNS = [Column("figure", "figure"), Column("value", "value")]

if __name__ == "__main__":
    main()
