"""SIGKILL benchmark: a journalled batch killed at random points, resumed until it completes.

Run (from the repository root; about a minute and a half on a 2-core machine)::

    .venv/bin/python benchmarks/sigkill_resume.py
    .venv/bin/python benchmarks/sigkill_resume.py --jobs 50 --kills 4 --modes honoured

A FakeGateway (``_gateway.py``) runs in a process of its own. The batch is
``client.generate_many(requests, output_dir=..., journal=...)`` in a child
process (this script with ``--child``), what ``asyncvideo batch --journal``
runs too. The parent SIGKILLs the child at seeded random points, ``--kills``
times, then starts it again on the same journal and output folder until a run
completes. Each kill first waits a random delay, then for the moment the
gateway sees the phase drawn for it (``/_sim/stats`` in-flight gauges): a
create in flight (the gateway answers ``--answer-delay`` after making the task,
so most such kills land after the task exists and before its id is journalled),
a download in flight (the CDN drips 16 KiB chunks, so a kill lands mid-body),
or only status polls; a phase that does not come within ``--phase-wait``
seconds is given up and the kill lands wherever the batch is. A run that does
not end within ``--hang-after`` seconds counts as hung. Last, the same batch
runs once uninterrupted in a fresh folder, for its wall time.

The FakeGateway always honours idempotency keys; the SDK relies on that only
when its profile says so, so the batch runs twice (``--modes``):

- ``honoured``: ``GatewayProfile(honours_idempotency_keys=True)``. A request
  whose create was cut by the kill is sent again with its journalled key;
  the gateway answers with the task it already made.
- ``not-honoured``: the default profile. Such a request is reported as
  ``CreateOutcomeUnknown`` with its key (a task may exist), never resent.

Measured against the gateway: tasks it made per request (duplicate creates
must be 0), every ``.mp4`` on disk checked by sha256 against the bytes the
gateway serves, ``.part`` files left over, and tasks lost: made on the server
but neither downloaded by any run nor reported to the caller with their key.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _common import (
    Column,
    Gateway,
    Json,
    Target,
    child_result,
    contender_names,
    dispatch,
    duplicate_creates,
    emit_child_result,
    environment,
    file_sha256,
    format_table,
    gateway_process,
    write_results,
)

MODES = ("honoured", "not-honoured")
PHASES = ("create", "poll", "download")
MODELS = ("sora-2", "kling-v1")  # the content endpoint and the CDN


def prompt(mode: str, index: int) -> str:
    """Each mode's prompts are its own, so the gateway's tasks tell which run made them."""
    return f"sigkill {mode} clip {index}"


def index_of(text: str) -> int:
    return int(text.rsplit(" ", 1)[1])


# -- the child: one run of the batch ---------------------------------------------------------


async def _batch(opts: argparse.Namespace) -> Json:
    import attrs

    from asyncvideo import GATEWAYS, Client, Limits, PollPolicy, VideoRequest, errors

    profile = attrs.evolve(GATEWAYS["default"], honours_idempotency_keys=opts.child == "honoured")
    requests = [
        VideoRequest(prompt=prompt(opts.tag, i), model=MODELS[i % 2]) for i in range(opts.jobs)
    ]
    ok = 0
    errors_by_type: collections.Counter[str] = collections.Counter()
    ambiguous_keys: list[str] = []
    async with (
        Client(
            api_key=opts.key,
            base_url=opts.url,
            gateway=profile,
            poll_policy=PollPolicy().scaled(opts.time_scale),
            limits=Limits(max_active_jobs=opts.active),
        ) as client,
        client.generate_many(requests, output_dir=opts.out, journal=opts.journal) as batch,
    ):
        async for outcome in batch:
            if outcome.ok:
                ok += 1
                continue
            errors_by_type[type(outcome.error).__name__] += 1
            if isinstance(outcome.error, errors.CreateOutcomeUnknown):
                ambiguous_keys.append(outcome.error.idempotency_key)
    return {"ok": ok, "errors": dict(errors_by_type), "ambiguous_keys": ambiguous_keys}


def child_main(opts: argparse.Namespace) -> None:
    emit_child_result(asyncio.run(_batch(opts)))


# -- the parent: kill, resume, check ---------------------------------------------------------


def phase_of(in_flight: Json) -> str:
    """What the batch is doing now, as the gateway sees it."""
    if in_flight["create"]:
        return "create"
    if in_flight["cdn"] or in_flight["content"]:
        return "download"
    if in_flight["status"]:
        return "poll"
    return "idle"  # between polls, or a run that hangs


def kill_in_phase(
    gateway: Gateway, child: subprocess.Popen[str], target: str, delay: float, patience: float
) -> str | None:
    """SIGKILL ``child`` once ``delay`` passed and the gateway sees ``target`` in flight.

    Returns the phase the kill landed in, or ``None`` if the child finished first.
    After ``patience`` more seconds without ``target``, the kill lands wherever it is.
    """
    started = time.perf_counter()
    while time.perf_counter() - started < delay:
        if child.poll() is not None:
            return None
        time.sleep(0.01)
    give_up = time.perf_counter() + patience
    while child.poll() is None:
        phase = phase_of(gateway.stats()["in_flight"])
        if phase == target or time.perf_counter() > give_up:
            child.send_signal(signal.SIGKILL)
            child.wait()
            return phase
        time.sleep(0.002)
    return None


def cut_creates(journal: Path, server_keys: set[str]) -> list[str]:
    """After a kill: keys the gateway made a task for while the journal holds no task id."""
    if not journal.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT idempotency_key FROM jobs WHERE task_id IS NULL").fetchall()
    return [row[0] for row in rows if row[0] in server_keys]


def run_once(
    gateway: Gateway,
    opts: argparse.Namespace,
    mode: str,
    folder: Path,
    target: str | None,
    rng: random.Random,
    tag: str | None = None,
) -> Json:
    """One run of the batch, killed in ``target`` phase (``None``: let it finish).

    ``tag`` marks the prompts (default: the mode), so that the gateway's tasks
    say which batch made them.
    """
    before = gateway.stats()
    args = [
        "--child", mode, "--tag", tag or mode, "--url", gateway.url, "--key", gateway.api_key,
        "--out", str(folder / "videos"), "--journal", str(folder / "journal.sqlite"),
        "--jobs", str(opts.jobs), "--active", str(opts.active),
        "--time-scale", str(opts.time_scale),
    ]  # fmt: skip
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__)), *args], stdout=subprocess.PIPE, text=True
    )
    killed_in = None
    if target is not None:
        delay = rng.uniform(opts.delay[0], opts.delay[1])
        killed_in = kill_in_phase(gateway, child, target, delay, opts.phase_wait)
    hung = False
    try:
        stdout, _ = child.communicate(timeout=opts.hang_after)
    except subprocess.TimeoutExpired:
        hung = True
        child.kill()
        stdout, _ = child.communicate()
    wall = time.perf_counter() - started
    after = gateway.stats()
    row: Json = {
        "mode": mode,
        "target": target or "-",
        "killed_in": killed_in,
        "exit": "hung" if hung else "killed" if killed_in else f"exit {child.returncode}",
        "wall_s": round(wall, 2),
        "creates": after["creates"] - before["creates"],
        "create_requests": after["create_requests"] - before["create_requests"],
        "replays": after["idempotency_replays"] - before["idempotency_replays"],
        "files": len(list((folder / "videos").glob("*.mp4"))),
        "parts": len(list((folder / "videos").glob("*.part"))),
        "result": child_result(stdout or ""),
    }
    if killed_in:
        server_keys = {t["idempotency_key"] for t in gateway.task_digests()}
        row["cut_keys"] = cut_creates(folder / "journal.sqlite", server_keys)
        row["cut_creates"] = len(row["cut_keys"])
    return row


def verify(gateway: Gateway, mode: str, videos: Path, final: Json | None, requests: int) -> Json:
    """What the batch left, checked against the gateway's own records."""
    tasks = [t for t in gateway.task_digests() if t["prompt"].startswith(prompt(mode, 0)[:-1])]
    by_sha = {t["sha256"]: t for t in tasks}
    verified: set[str] = set()
    corrupt = 0
    for path in sorted(videos.glob("*.mp4")):
        task = by_sha.get(file_sha256(path))
        if task is not None and index_of(task["prompt"]) == int(path.name.split("_", 1)[0]):
            verified.add(task["id"])
        else:
            corrupt += 1
    reported = set(final["ambiguous_keys"]) if final else set()
    answered = final["ok"] + sum(final["errors"].values()) if final else 0
    not_downloaded = [t for t in tasks if t["id"] not in verified]
    return {
        "tasks_made": len(tasks),
        "duplicate_creates": duplicate_creates(index_of(t["prompt"]) for t in tasks),
        "files_verified_sha256": len(verified),
        "files_corrupt_or_misnamed": corrupt,
        "part_files_left": len(list(videos.glob("*.part"))),
        "ambiguous_creates_reported": len(reported),
        "ambiguous_with_a_task": sum(1 for t in tasks if t["idempotency_key"] in reported),
        "tasks_not_downloaded": len(not_downloaded),
        "tasks_lost": sum(1 for t in not_downloaded if t["idempotency_key"] not in reported),
        "requests_unanswered": requests - answered,
    }


def run_mode(gateway: Gateway, opts: argparse.Namespace, mode: str) -> tuple[Json, list[Json]]:
    rng = random.Random(f"{opts.seed}-{mode}")
    plan = [PHASES[i % len(PHASES)] for i in range(opts.kills)]
    rng.shuffle(plan)
    gateway.begin()
    runs: list[Json] = []
    with tempfile.TemporaryDirectory(prefix="sigkill-") as tmp:
        folder = Path(tmp)
        while True:
            target = plan[len(runs)] if len(runs) < len(plan) else None
            row = run_once(gateway, opts, mode, folder, target, rng)
            row["run"] = len(runs) + 1
            runs.append(row)
            print(f"  {mode} run {row['run']}: {row['exit']} ({row['killed_in'] or '-'}) "
                  f"after {row['wall_s']} s, {row['files']} files", flush=True)  # fmt: skip
            if row["exit"] != "killed" or len(runs) > opts.kills + 20:
                break
        summary = verify(gateway, mode, folder / "videos", runs[-1]["result"], opts.jobs)
    with tempfile.TemporaryDirectory(prefix="sigkill-baseline-") as tmp:
        baseline = run_once(gateway, opts, mode, Path(tmp), None, rng, tag=f"{mode}-baseline")
    killed = [row for row in runs if row["exit"] == "killed"]
    summary.update(
        requests=opts.jobs,
        kills=len(killed),
        kills_by_phase=dict(collections.Counter(row["killed_in"] for row in killed)),
        runs=len(runs),
        completed=runs[-1]["exit"] == "exit 0",
        hung_runs=sum(1 for row in runs if row["exit"] == "hung"),
        part_files_after_a_kill_max=max((row["parts"] for row in killed), default=0),
        create_requests=sum(row["create_requests"] for row in runs),
        idempotency_replays=sum(row["replays"] for row in runs),
        # A key stays cut across kills until a run resolves it: count each once.
        creates_cut_by_a_kill=len({key for row in killed for key in row["cut_keys"]}),
        wall_s_killed_runs=round(sum(row["wall_s"] for row in killed), 2),
        wall_s_completing_run=runs[-1]["wall_s"],
        wall_s_all_runs=round(sum(row["wall_s"] for row in runs), 2),
        wall_s_uninterrupted=baseline["wall_s"],
        run_wall_s=[row["wall_s"] for row in runs],
    )
    return summary, runs


def targets(results: dict[str, Json]) -> list[Target]:
    found = []
    for mode, data in results.items():
        found += [
            Target(f"{mode}: duplicate creates", data["duplicate_creates"], 0),
            Target(f"{mode}: tasks lost", data["tasks_lost"], 0),
            Target(f"{mode}: corrupt files kept", data["files_corrupt_or_misnamed"], 0),
            Target(f"{mode}: .part files left", data["part_files_left"], 0),
            Target(f"{mode}: hung runs", data["hung_runs"], 0),
        ]
        if mode == "honoured":
            found.append(
                Target(
                    f"{mode}: files verified",
                    data["files_verified_sha256"],
                    data["requests"],
                    higher_is_better=True,
                )
            )
    return found


RUN_COLUMNS = [
    Column("mode", "mode"),
    Column("run", "run"),
    Column("target", "aimed at"),
    Column("killed_in", "killed in"),
    Column("exit", "exit"),
    Column("wall_s", "wall s", "{:.2f}"),
    Column("creates", "new tasks"),
    Column("replays", "key replays"),
    Column("cut_creates", "cut creates"),
    Column("files", "files"),
    Column("parts", ".part"),
]
SUMMARY_COLUMNS = [Column("figure", "figure"), *(Column(mode, mode) for mode in MODES)]


def parent_main(opts: argparse.Namespace) -> Json:
    gateway_options = [
        "--time-scale", str(opts.time_scale),
        "--duration", *(str(value) for value in opts.duration),
        "--video-bytes", str(256 * 1024), "--chunk-size", str(16 * 1024),
        "--vocabulary", "openai", "--seed", str(opts.seed),
    ]  # fmt: skip
    results: dict[str, Json] = {}
    all_runs: list[Json] = []
    with gateway_process(gateway_options) as gateway:
        # Slow enough that a kill can land inside a create or a download.
        gateway.configure(
            latency=opts.latency,
            create_answer_delay=opts.answer_delay,
            cdn_chunk_delay=opts.chunk_delay,
        )
        for mode in opts.modes:
            print(f"{mode}: {opts.jobs} jobs, {opts.kills} kills ...", flush=True)
            results[mode], runs = run_mode(gateway, opts, mode)
            all_runs += runs
    print()
    print(format_table(all_runs, RUN_COLUMNS))
    print()
    figures = [key for key in results[opts.modes[0]] if key != "run_wall_s"]
    rows = [
        {"figure": key, **{mode: str(data[key]) for mode, data in results.items()}}
        for key in figures
    ]
    print(format_table(rows, [c for c in SUMMARY_COLUMNS if c.key in ("figure", *results)]))
    found = targets(results)
    print()
    for target in found:
        print(target.line())
    data: Json = {
        "benchmark": "sigkill_resume",
        "settings": {
            "jobs": opts.jobs,
            "kills": opts.kills,
            "active": opts.active,
            "seed": opts.seed,
            "time_scale": opts.time_scale,
            "durations_simulated_s": list(opts.duration),
            "kill_delay_s": list(opts.delay),
            "gateway_latency_s": opts.latency,
            "create_answer_delay_s": opts.answer_delay,
            "cdn_chunk_delay_s": opts.chunk_delay,
            "modes": opts.modes,
        },
        "environment": environment(),
        "results": results,
        "all_runs": all_runs,
        "targets": [target.to_dict() for target in found],
    }
    print(f"\nwrote {write_results('sigkill_resume', data)}")
    return data


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1, help="seeds kill phases and delays")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset")
    parser.add_argument("--active", type=int, default=50, help="Limits.max_active_jobs")
    parser.add_argument("--time-scale", type=float, default=0.05)
    parser.add_argument(
        "--duration", type=float, nargs=2, default=(40.0, 120.0), metavar=("LOW", "HIGH"),
        help="simulated seconds per job (times --time-scale for wall time)",
    )  # fmt: skip
    parser.add_argument(
        "--delay", type=float, nargs=2, default=(0.2, 1.5), metavar=("LOW", "HIGH"),
        help="wall seconds from a run's start before its kill is armed",
    )  # fmt: skip
    parser.add_argument("--phase-wait", type=float, default=3.0)
    parser.add_argument("--latency", type=float, default=0.01, help="gateway seconds/request")
    parser.add_argument(
        "--answer-delay", type=float, default=0.02,
        help="gateway seconds between making a task and answering its create",
    )  # fmt: skip
    parser.add_argument("--chunk-delay", type=float, default=0.005, help="CDN seconds/16 KiB")
    parser.add_argument("--hang-after", type=float, default=300.0, help="a run's time limit")
    # Child-side options (the parent passes these).
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--journal", help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    return parser


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    opts = _parser().parse_args(argv)
    opts.modes = contender_names(opts.modes, MODES)
    return opts


def main(argv: Sequence[str] | None = None) -> None:
    dispatch(parse_options(argv), child_main, parent_main)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
