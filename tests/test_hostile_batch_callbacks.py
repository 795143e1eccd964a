"""Hostile batches with webhooks: every fault and every callback trick at once.

Over loopback: a FakeGateway that signs, drops, duplicates, delays and forges
callbacks, and ``webhooks.aiohttp_app(client)`` on a loopback aiohttp server.
Time is a :class:`HeldClock` that a driver moves in steps, so callbacks have a
sleeping poller to wake (a plain ManualClock would jump to the safety poll).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import attrs
import pytest
from aiohttp import web

from asyncvideo import Client, Outcome, VideoRequest, webhooks
from asyncvideo._profiles import GATEWAYS
from asyncvideo.errors import JobFailedError, JobTimeoutError
from asyncvideo.testing import FakeGateway

from .conftest import HeldClock

pytestmark = pytest.mark.anyio

KEY = "sk-hostile-callbacks-0123456789"
#: the FakeGateway honours keys: an ambiguous create (5xx) is replayed, not reported
KEYED = attrs.evolve(GATEWAYS["default"], honours_idempotency_keys=True)
SECRET = "whsec-hostile-callbacks-42"


@asynccontextmanager
async def _hook_server(make: Callable[[str], Client], port: int = 0) -> AsyncIterator[Client]:
    """A client whose ``webhook_url`` is a loopback server running ``aiohttp_app(client)``.

    ``port``: the port of an earlier one (a restarted process keeps its public URL).
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    client = make(f"http://127.0.0.1:{port}/hooks/video")
    app = web.Application()
    app.add_subapp("/hooks/video", webhooks.aiohttp_app(client))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        async with client:
            yield client
    finally:
        await runner.cleanup()


def _client(gateway: FakeGateway, clock: HeldClock, **options: Any) -> Callable[[str], Client]:
    def make(url: str) -> Client:
        return Client(
            api_key=KEY,
            base_url=gateway.url,
            clock=clock,
            seed=7,
            gateway=KEYED,
            webhook_url=url,
            webhook_secret=SECRET,
            **options,
        )

    return make


async def _drive(clock: HeldClock, done: Callable[[], bool], step: float = 2.0) -> None:
    """Move time in steps, letting real sockets (callbacks) land between, until ``done()``."""
    with anyio.fail_after(20):  # real seconds: a hang fails, it does not block the suite
        while not done():
            clock.advance(step)
            await asyncio.sleep(0.01)


async def _until(check: Callable[[], bool]) -> None:
    """Wait (real time, bounded) for what arrives over real sockets."""
    with anyio.fail_after(10):
        while not check():  # noqa: ASYNC110 - the condition is a counter
            await asyncio.sleep(0.005)


async def _killed_after_creates(
    client: Client, gateway: FakeGateway, n: int, out: Path, journal: Path
) -> None:
    """Run a journalled batch of ``n`` and cancel it once every task was created."""
    async with anyio.create_task_group() as group:
        group.start_soon(partial(_run_batch, client, _requests(n), out, [], journal=journal))
        await _until(lambda: gateway.stats.creates == n)
        group.cancel_scope.cancel()


def _check_resumed(gateway: FakeGateway, outcomes: list[Outcome], n: int, statuses: int) -> None:
    """Every clip once, nothing created twice, and few status requests since ``statuses``."""
    assert _verified(gateway, outcomes) == n
    assert gateway.stats.creates == n
    assert gateway.stats.downloads_completed == n
    # One re-attaching query each, then callbacks (60 s safety polls), not the 5 s schedule.
    assert gateway.stats.requests["status"] - statuses <= 2 * n


def _sdk_tasks() -> list[asyncio.Task[Any]]:
    """Tasks still running SDK code (the simulator's own are not the client's)."""
    left = []
    for task in asyncio.all_tasks():
        where = getattr(task.get_coro(), "cr_code", None)
        name = where.co_filename if where is not None else ""
        if "/asyncvideo/" in name and "/asyncvideo/testing/" not in name:
            left.append(task)
    return left


def _requests(n: int) -> list[VideoRequest]:
    models = ("viduq1", "kling-v1")
    return [VideoRequest(prompt=f"clip {i}", model=models[i % 2]) for i in range(n)]


def _verified(gateway: FakeGateway, outcomes: list[Outcome]) -> int:
    good = 0
    for outcome in outcomes:
        assert outcome.error is None, outcome.error
        assert outcome.path is not None
        assert outcome.job is not None
        data = outcome.path.read_bytes()
        expected = gateway.video_content(outcome.job.id)
        assert hashlib.sha256(data).digest() == hashlib.sha256(expected).digest()
        good += 1
    return good


async def _run_batch(
    client: Client,
    requests: list[VideoRequest],
    out: Path,
    outcomes: list[Outcome],
    *,
    journal: Path | None = None,
    stop_after: int | None = None,
) -> None:
    async with client.generate_many(requests, output_dir=out, journal=journal) as batch:
        async for outcome in batch:
            outcomes.append(outcome)
            if stop_after is not None and len(outcomes) >= stop_after:
                return


async def test_a_batch_under_every_fault_and_callback_trick_delivers_each_clip_once(
    held: HeldClock, tmp_path: Path
) -> None:
    n = 40
    async with FakeGateway(
        clock=held,
        api_key=KEY,
        durations=(20.0, 60.0),
        video_bytes=16 * 1024,
        seed=11,
        error_rate_5xx=0.05,
        rate_limit=20.0,  # 429s, with Retry-After
        drop_download_after=4096,
        drop_downloads=6,
        content_lag=4.0,
        webhook_secret=SECRET,
        webhook_drop_rate=0.3,
        webhook_duplicate_rate=0.5,
        webhook_forge_rate=0.5,
        webhook_delay=1.0,
    ) as gw:
        outcomes: list[Outcome] = []
        async with _hook_server(_client(gw, held)) as client:
            async with anyio.create_task_group() as group:
                group.start_soon(_run_batch, client, _requests(n), tmp_path, outcomes)
                await _drive(held, lambda: len(outcomes) == n)
            assert len(client._poller) == 0
        assert _verified(gw, outcomes) == n
        assert gw.stats.creates == n  # no duplicate create
        assert gw.stats.downloads_completed == n  # one download per clip
        assert gw.stats.webhook_forged > 0
        assert gw.stats.webhook_dropped > 0
        assert gw.stats.rate_limited > 0
        assert gw.stats.server_errors > 0
        assert gw.stats.dropped_connections > 0
        statuses = gw.stats.requests["status"]
        # Callbacks carry most jobs (one confirming poll each); dropped ones wait for
        # the 60 s safety poll, and 5xx answers add a few.
        assert statuses <= 2 * n, statuses
        assert not list(tmp_path.glob("*.part"))


async def test_forged_callbacks_never_poll_finish_or_fail_a_job(
    held: HeldClock, tmp_path: Path
) -> None:
    async with FakeGateway(
        clock=held,
        api_key=KEY,
        durations=1000.0,
        video_bytes=16 * 1024,
        webhook_secret=SECRET,
        webhook_forge_rate=1.0,
    ) as gw:
        outcomes: list[Outcome] = []
        async with (
            _hook_server(_client(gw, held)) as client,
            anyio.create_task_group() as group,
        ):
            group.start_soon(_run_batch, client, _requests(6), tmp_path, outcomes)
            await _until(lambda: gw.stats.webhook_forged == 6)
            await asyncio.sleep(0.2)  # room for the forgeries to act, were they believed
            assert outcomes == []
            assert gw.stats.requests["status"] == 0  # refused before any status query
            assert gw.stats.webhook_deliveries == 0
            group.cancel_scope.cancel()
        assert not list(tmp_path.glob("*.mp4"))


@pytest.mark.parametrize("stop_after", [0, 3, 9])
async def test_leaving_a_callback_batch_early_leaves_no_part_file_and_no_task(
    held: HeldClock, tmp_path: Path, stop_after: int
) -> None:
    async with FakeGateway(
        clock=held,
        api_key=KEY,
        durations=(20.0, 40.0),
        video_bytes=64 * 1024,
        seed=3,
        cdn_chunk_delay=0.001,
        webhook_secret=SECRET,
        webhook_duplicate_rate=0.5,
    ) as gw:
        outcomes: list[Outcome] = []
        async with _hook_server(_client(gw, held)) as client:
            finished = anyio.Event()

            async def run() -> None:
                await _run_batch(
                    client, _requests(12), tmp_path, outcomes, stop_after=stop_after or None
                )
                finished.set()

            async with anyio.create_task_group() as group:
                group.start_soon(run)
                if stop_after == 0:
                    await _until(lambda: gw.stats.creates >= 6)
                    group.cancel_scope.cancel()
                else:
                    await _drive(held, finished.is_set)
            assert len(client._poller) == 0
            assert not client._batches
        assert not list(tmp_path.glob("*.part"))
        await asyncio.sleep(0.05)
        assert _sdk_tasks() == []


async def test_a_resumed_batch_finishes_jobs_that_called_back_while_no_batch_ran(
    held: HeldClock, tmp_path: Path
) -> None:
    n = 8
    journal = tmp_path / "journal.sqlite"
    out = tmp_path / "clips"
    async with FakeGateway(
        clock=held,
        api_key=KEY,
        durations=(20.0, 30.0),
        video_bytes=16 * 1024,
        webhook_secret=SECRET,
    ) as gw:
        async with _hook_server(_client(gw, held)) as client:
            await _killed_after_creates(client, gw, n, out, journal)  # before any task ends
            # Every task ends and calls back while no batch runs: nobody is woken.
            held.advance(40.0)
            await _until(lambda: gw.stats.webhook_deliveries == n)
            statuses_before = gw.stats.requests["status"]
            outcomes: list[Outcome] = []
            async with anyio.create_task_group() as group:
                group.start_soon(
                    partial(_run_batch, client, _requests(n), out, outcomes, journal=journal)
                )
                await _drive(held, lambda: len(outcomes) == n, step=1.0)
        _check_resumed(gw, outcomes, n, statuses_before)


async def test_a_callback_storm_over_a_batch_of_200_does_not_multiply_status_requests(
    held: HeldClock, tmp_path: Path
) -> None:
    n = 200
    async with FakeGateway(
        clock=held,
        api_key=KEY,
        durations=500.0,
        video_bytes=8 * 1024,
        webhook_secret=SECRET,
    ) as gw:
        outcomes: list[Outcome] = []
        async with _hook_server(_client(gw, held)) as client:
            assert client.webhook_url is not None
            async with anyio.create_task_group() as group:
                group.start_soon(_run_batch, client, _requests(n), tmp_path, outcomes)
                with anyio.fail_after(20):
                    while len(client._poller) < n:  # noqa: ASYNC110 - a counter
                        await asyncio.sleep(0.01)
                # Validly signed, distinct deliveries claiming success, 5 per job, at once.
                tasks = list(gw.tasks.values())
                async with aiohttp.ClientSession() as session:
                    for round_ in range(5):
                        for task in tasks:
                            body = json.dumps(
                                {"id": task.id, "state": "success", "creations": []}
                            ).encode()
                            headers = webhooks.sign(
                                body,
                                SECRET,
                                timestamp=held.time(),
                                delivery_id=f"storm-{round_}-{task.id}",
                            )
                            assert task.callback_url is not None
                            async with session.post(
                                task.callback_url, data=body, headers=headers
                            ) as resp:
                                assert resp.status == 200
                        held.advance(1.0)
                        await asyncio.sleep(0.05)
                statuses = gw.stats.requests["status"]
                assert outcomes == []  # the claims were not believed
                group.cancel_scope.cancel()
        # 5 s apart at most per job: 5 claims over 5 s cost about 2 polls each, not 5.
        assert statuses <= 2 * n, statuses


async def test_a_batch_resumed_by_a_new_process_catches_callbacks_it_never_received(
    held: HeldClock, tmp_path: Path
) -> None:
    # The first process dies with its receiver: callbacks of tasks that end meanwhile
    # fail (retried, then given up); the rest end after the new process started.
    n = 8
    journal = tmp_path / "journal.sqlite"
    out = tmp_path / "clips"
    async with FakeGateway(
        clock=held,
        api_key=KEY,
        durations=(20.0, 300.0),
        video_bytes=16 * 1024,
        webhook_secret=SECRET,
        webhook_backoff=0.5,
    ) as gw:
        async with _hook_server(_client(gw, held)) as client:
            await _killed_after_creates(client, gw, n, out, journal)
            assert client.webhook_url is not None
            port = urlsplit(client.webhook_url).port
        ends = sorted(task.ends_at for task in gw.tasks.values())
        await _drive(held, lambda: held.monotonic() > (ends[0] + ends[-1]) / 2, step=1.0)
        await asyncio.sleep(0.1)  # the failed deliveries and their retries
        statuses_before = gw.stats.requests["status"]
        outcomes: list[Outcome] = []
        async with (
            _hook_server(_client(gw, held), port or 0) as client,
            anyio.create_task_group() as group,
        ):
            group.start_soon(
                partial(_run_batch, client, _requests(n), out, outcomes, journal=journal)
            )
            await _drive(held, lambda: len(outcomes) == n, step=1.0)
        assert len(client._callback_tasks) == 0  # ended jobs are not remembered
        _check_resumed(gw, outcomes, n, statuses_before)


async def test_callbacks_that_beat_their_create_answers_finish_a_batch_without_waiting(
    held: HeldClock, tmp_path: Path
) -> None:
    n = 6
    async with FakeGateway(
        clock=held,
        api_key=KEY,
        durations=1.0,
        video_bytes=16 * 1024,
        webhook_secret=SECRET,
        webhook_duplicate_rate=0.5,
        create_answer_delay=0.3,  # real seconds: the callbacks land first
    ) as gw:
        outcomes: list[Outcome] = []
        async with (
            _hook_server(_client(gw, held)) as client,
            anyio.create_task_group() as group,
        ):
            group.start_soon(_run_batch, client, _requests(n), tmp_path, outcomes)
            await _until(lambda: gw.stats.creates == n)
            held.advance(2.0)  # every task ends and calls back before its create is answered
            await _until(lambda: len(outcomes) == n)
        assert held.monotonic() == 2.0  # no safety interval had to pass
        assert gw.stats.webhook_deliveries == n
        assert _verified(gw, outcomes) == n
        assert gw.stats.requests["status"] == n
        assert gw.stats.downloads_completed == n


async def test_jobs_that_fail_call_back_and_end_failed_without_a_download(
    held: HeldClock, tmp_path: Path
) -> None:
    n = 10
    async with FakeGateway(
        clock=held,
        api_key=KEY,
        durations=20.0,
        video_bytes=16 * 1024,
        seed=5,
        failure_rate=0.5,
        webhook_secret=SECRET,
        webhook_duplicate_rate=0.5,
    ) as gw:
        outcomes: list[Outcome] = []
        async with (
            _hook_server(_client(gw, held)) as client,
            anyio.create_task_group() as group,
        ):
            group.start_soon(_run_batch, client, _requests(n), tmp_path, outcomes)
            await _until(lambda: gw.stats.creates == n)
            held.advance(25.0)
            await _until(lambda: len(outcomes) == n)
        failed = [o for o in outcomes if o.error is not None]
        assert 0 < len(failed) < n
        assert all(isinstance(o.error, JobFailedError) for o in failed)
        assert _verified(gw, [o for o in outcomes if o.error is None]) == n - len(failed)
        assert gw.stats.downloads_completed == n - len(failed)
        assert gw.stats.requests["status"] == n  # each callback confirmed once, no safety poll
        assert len(list(tmp_path.glob("*.mp4"))) == n - len(failed)


async def test_a_callback_batch_whose_callbacks_are_all_lost_ends_by_its_deadline(
    held: HeldClock, tmp_path: Path
) -> None:
    n = 10
    async with FakeGateway(
        clock=held,
        api_key=KEY,
        durations=1000.0,
        video_bytes=16 * 1024,
        webhook_secret=SECRET,
        webhook_drop_rate=1.0,
    ) as gw:
        outcomes: list[Outcome] = []
        async with _hook_server(_client(gw, held)) as client:
            batch = client.generate_many(_requests(n), output_dir=tmp_path, timeout=30.0)
            async with anyio.create_task_group() as group:

                async def run() -> None:
                    async with batch:
                        outcomes.extend([outcome async for outcome in batch])

                group.start_soon(run)
                await _drive(held, lambda: len(outcomes) == n, step=1.0)
        assert all(isinstance(o.error, JobTimeoutError) for o in outcomes)
        assert held.monotonic() <= 35.0  # no job outlived its deadline by much
        assert gw.stats.requests["status"] <= 2 * n  # the last look, not the 5 s schedule
