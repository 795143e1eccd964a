"""The client side of webhooks: creates carry our callback URL, a callback wakes the poll.

Over loopback against the FakeGateway. Most tests run on a :class:`HeldClock`:
a ManualClock whose sleeps wait until the test moves time past their end, so
the poller sleeps as it does in production and a callback has a sleep to cut
short (a plain ManualClock would jump to the next poll at once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from asyncvideo import Client, Job, JobState, ManualClock, PollPolicy, VideoRequest
from asyncvideo._callbacks import CALLBACK_TOKEN_PARAM, CallbackTasks, token_from_callback_url
from asyncvideo.errors import ConfigurationError, JobTimeoutError
from asyncvideo.providers import PROVIDERS
from asyncvideo.testing import FakeGateway

from .conftest import HeldClock

pytestmark = pytest.mark.anyio

KEY = "sk-hook-test-key-0123456789"
SECRET = "whsec-very-secret-value-42"
#: never delivered: the FakeGateway only calls back to loopback URLs
REMOTE_HOOK = "https://app.example/hooks/video?tenant=7"


@pytest.fixture
async def held_gateway(held: HeldClock) -> AsyncIterator[FakeGateway]:
    async with FakeGateway(clock=held, api_key=KEY, durations=20.0, video_bytes=16 * 1024) as gw:
        yield gw


def _statuses(gateway: FakeGateway) -> int:
    return gateway.stats.requests["status"]


def _creates(gateway: FakeGateway) -> list[dict[str, Any]]:
    return [r.json for r in gateway.requests if r.kind == "create" and r.json is not None]


async def _until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait (real time, bounded) until ``check()`` holds: callbacks arrive over real sockets."""
    with anyio.fail_after(seconds):
        while not check():  # noqa: ASYNC110 - the condition is a counter, not an event
            await asyncio.sleep(0.005)


async def _settle() -> None:
    """Let every task that can run, run (real time, a few loop turns)."""
    for _ in range(20):
        await asyncio.sleep(0.001)


class Receiver:
    """A tiny loopback webhook endpoint that hands each callback to ``client.notify``."""

    def __init__(self) -> None:
        self.client: Client | None = None
        self.answers: list[bool] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        token = token_from_callback_url(str(request.url))
        assert self.client is not None
        provider = PROVIDERS["vidu"]
        job = provider.parse(body, model="viduq1")
        self.answers.append(self.client.notify(job, token=token))
        return web.Response(text="ok")

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


# -- what the create carries ---------------------------------------------------------------


async def test_create_carries_callback_url_and_reference_where_the_provider_takes_one(
    make_client: Callable[..., Client], gateway: FakeGateway
) -> None:
    client = make_client(webhook_url=REMOTE_HOOK)
    await client.submit(prompt="a", model="viduq1", idempotency_key="key-vidu")
    await client.submit(prompt="b", model="kling-v1", idempotency_key="key kling/1")
    await client.submit(prompt="c", model="sora-2", idempotency_key="key-sora")
    await client.submit(prompt="d", model="jimeng_vgfm_t2v_l20", idempotency_key="key-jimeng")
    creates = [r for r in gateway.requests if r.kind == "create"]
    vidu, kling, sora, jimeng = creates

    assert vidu.json["metadata"]["callback_url"] == (
        "https://app.example/hooks/video?tenant=7&asyncvideo_token=key-vidu"
    )
    assert vidu.json["metadata"]["payload"] == "key-vidu"
    assert vidu.headers["Idempotency-Key"] == "key-vidu"  # the reference is the create's key

    assert token_from_callback_url(kling.json["metadata"]["callback_url"]) == "key kling/1"
    assert kling.json["metadata"]["external_task_id"] == "key kling/1"

    assert sora.json is None
    assert "callback" not in str(sora.form)  # Sora has no such field
    assert "callback_url" not in jimeng.json.get("metadata", {})  # nor Jimeng (new-api)


async def test_an_explicit_callback_url_wins_and_extra_keeps_its_payload(
    make_client: Callable[..., Client], gateway: FakeGateway
) -> None:
    client = make_client(webhook_url=REMOTE_HOOK)
    job = await client.submit(
        prompt="a", model="viduq1", callback_url="https://mine.example/cb", idempotency_key="k1"
    )
    await client.submit(prompt="b", model="viduq1", extra={"payload": "mine"}, idempotency_key="k2")
    first, second = _creates(gateway)
    assert first["metadata"]["callback_url"] == "https://mine.example/cb"
    assert "payload" not in first["metadata"]
    assert second["metadata"]["payload"] == "mine"
    assert second["metadata"]["callback_url"].endswith("asyncvideo_token=k2")
    # A job whose callback goes elsewhere is polled on the normal schedule.
    assert not client._callback_tasks.expects_callback(job.provider, job.id)


async def test_a_client_without_webhook_url_sends_no_callback(
    client: Client, gateway: FakeGateway
) -> None:
    await client.submit(prompt="a", model="viduq1")
    (body,) = _creates(gateway)
    assert "callback_url" not in body.get("metadata", {})
    assert "payload" not in body.get("metadata", {})


@pytest.mark.parametrize(
    "url",
    ["ftp://x.example/h", "/relative/hook", "hooks.example", "https://", "http://h.example/#frag"],
)
def test_a_bad_webhook_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Client(api_key=KEY, base_url="http://127.0.0.1:1", webhook_url=url)
    assert raised.value.field == "webhook_url"


def test_an_empty_webhook_secret_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        Client(api_key=KEY, base_url="http://127.0.0.1:1", webhook_secret="")


# -- a callback wakes the one poller ---------------------------------------------------------


async def test_a_delivered_callback_wakes_a_waiting_wait_at_once(
    held: HeldClock, held_gateway: FakeGateway
) -> None:
    async with (
        Receiver() as receiver,
        Client(api_key=KEY, base_url=held_gateway.url, clock=held, webhook_url=receiver.url) as c,
    ):
        receiver.client = c
        job = await c.submit(prompt="a cat", model="viduq1")
        async with anyio.create_task_group() as group:
            done: list[Job] = []

            async def waiter() -> None:
                done.append(await c.wait(job))

            group.start_soon(waiter)
            await _settle()
            assert _statuses(held_gateway) == 0  # first safety poll is a minute away
            held.advance(25.0)  # the task ends at 20 s; the gateway calls back
            await _until(lambda: bool(done))
    assert done[0].state is JobState.SUCCEEDED
    assert receiver.answers == [True]
    assert held_gateway.stats.webhook_deliveries == 1
    assert _statuses(held_gateway) == 1  # exactly the one poll the callback asked for
    assert held.monotonic() == 25.0  # no safety interval passed


async def test_our_token_decides_which_job_wakes_whatever_id_the_body_names(
    held: HeldClock, held_gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    async with Client(
        api_key=KEY, base_url=held_gateway.url, clock=held, webhook_url=REMOTE_HOOK
    ) as c:
        first = await c.submit(prompt="a", model="viduq1", idempotency_key="key-a")
        await c.submit(prompt="b", model="viduq1", idempotency_key="key-b")
        async with anyio.create_task_group() as group:
            group.start_soon(c.wait, first)
            await _settle()
            held.advance(25.0)
            # key-b names the second task, which nobody waits for: the first stays asleep
            assert c.notify(first, token="key-b") is False
            await _settle()
            assert _statuses(held_gateway) == 0
            # an unknown job is not watched: nothing to wake
            stranger = Job(id="nope", model="viduq1", provider="vidu", state=JobState.SUCCEEDED)
            assert c.notify(stranger) is False
            # A relay re-numbers tasks: Vidu calls back with its own id. Our token wins,
            # and the woken poll asks for the task by the id we know.
            upstream = Job(
                id="vidu-4711", model="viduq1", provider="vidu", state=JobState.SUCCEEDED
            )
            assert c.notify(upstream, token="key-a") is True
        assert _statuses(held_gateway) == 1
        polled = [r.path for r in held_gateway.requests if r.kind == "status"]
        assert polled == [f"/v1/video/generations/{first.id}"]
        assert "reference of task" in caplog.text  # the refusal of key-b is logged


async def test_duplicate_callbacks_cost_one_status_query_and_one_download(
    held: HeldClock, held_gateway: FakeGateway, tmp_path: Path
) -> None:
    async with Client(
        api_key=KEY, base_url=held_gateway.url, clock=held, webhook_url=REMOTE_HOOK
    ) as c:
        paths: list[Path] = []

        async def generate() -> None:
            request = VideoRequest(prompt="a", model="viduq1", idempotency_key="dup")
            paths.append(await c.generate(request, output=tmp_path / "a.mp4"))

        async with anyio.create_task_group() as group:
            group.start_soon(generate)
            await _settle()
            (task_id,) = held_gateway.tasks
            snapshot = Job(id=task_id, model="viduq1", provider="vidu", state=JobState.SUCCEEDED)
            held.advance(25.0)
            answers = [c.notify(snapshot, token="dup") for _ in range(3)]
            answers.append(c.notify(snapshot))  # the same without our reference
            await _settle()
            answers.append(c.notify(snapshot, token="dup"))  # while the poll may be out
        late = c.notify(snapshot, token="dup")  # after the job finished
    assert answers[:4] == [True] * 4
    assert late is False
    assert len(c._callback_tasks) == 0  # an ended job's reference is not kept
    assert _statuses(held_gateway) == 1
    assert held_gateway.stats.downloads_completed == 1
    assert paths[0].stat().st_size == 16 * 1024


async def test_a_callback_while_a_poll_is_out_asks_once_more_if_that_poll_missed_it(
    held: HeldClock,
) -> None:
    # The poll in flight may have been answered just before the task ended: the
    # callback then deserves one more look, at once, not a minute later.
    async with (
        FakeGateway(clock=held, api_key=KEY, durations=100.0, latency=0.05) as gw,
        Client(api_key=KEY, base_url=gw.url, clock=held, webhook_url=REMOTE_HOOK) as c,
    ):
        job = await c.submit(prompt="a", model="viduq1")
        async with anyio.create_task_group() as group:
            group.start_soon(c.wait, job)
            await _settle()
            held.advance(70.0)  # past the first safety poll (60 s +- 10%)
            await _until(lambda: gw.stats.in_flight["status"] == 1)
            assert c.notify(job) is True
            assert c.notify(job) is True  # a duplicate asks for no third poll
            await _until(lambda: _statuses(gw) == 2)
            await _until(lambda: gw.stats.in_flight["status"] == 0)
            await asyncio.sleep(0.1)  # room for a third poll, were one due
            group.cancel_scope.cancel()
        assert _statuses(gw) == 2
        assert held.monotonic() == 70.0


async def test_a_woken_job_leaves_one_live_heap_entry_and_others_undisturbed(
    held: HeldClock, held_gateway: FakeGateway
) -> None:
    async with Client(
        api_key=KEY, base_url=held_gateway.url, clock=held, webhook_url=REMOTE_HOOK
    ) as c:
        first = await c.submit(prompt="a", model="viduq1")
        second = await c.submit(prompt="b", model="viduq1")
        async with anyio.create_task_group() as group:
            group.start_soon(c.wait, first)
            group.start_soon(c.wait, second)
            await _settle()
            assert c._poller.scheduled == 2
            held.advance(25.0)
            assert c.notify(first) is True
            await _until(lambda: len(c._poller) == 1)  # the first is done, the second waits
            assert c._poller.scheduled == 1  # the superseded entry is not counted
            assert _statuses(held_gateway) == 1
            group.cancel_scope.cancel()
        assert c._poller.scheduled == 0


# -- lost callbacks: the safety interval -----------------------------------------------------


async def test_lost_callbacks_are_caught_by_the_safety_interval_with_few_polls(
    clock: ManualClock, tmp_path: Path
) -> None:
    async with FakeGateway(clock=clock, api_key=KEY, durations=150.0) as gw:
        async with Client(
            api_key=KEY, base_url=gw.url, clock=clock, webhook_url=REMOTE_HOOK, seed=3
        ) as c:
            path = await c.generate(prompt="a", model="viduq1", output=tmp_path / "a.mp4")
        callback_polls = _statuses(gw)
        async with Client(api_key=KEY, base_url=gw.url, clock=clock, seed=3) as plain:
            await plain.generate(prompt="a", model="viduq1", output=tmp_path / "b.mp4")
        plain_polls = _statuses(gw) - callback_polls
    assert path.exists()
    # 150 s at a 60 s (±10%) interval: polls near 60, 120 and 180 s.
    assert callback_polls == 3
    assert plain_polls == PollPolicy().minimum_polls(150.0)  # the normal schedule: 13


async def test_the_deadline_still_holds_for_a_job_with_a_callback(clock: ManualClock) -> None:
    async with FakeGateway(clock=clock, api_key=KEY, durations=1000.0) as gw:
        async with Client(
            api_key=KEY, base_url=gw.url, clock=clock, webhook_url=REMOTE_HOOK, seed=3
        ) as c:
            job = await c.submit(prompt="a", model="viduq1")
            started = clock.monotonic()
            with pytest.raises(JobTimeoutError):
                await c.wait(job, timeout=200.0)
            assert clock.monotonic() - started == pytest.approx(200.0, abs=1.0)
        assert 3 <= _statuses(gw) <= 4  # about 60, 120, 180 and the last look at 200


def test_callback_interval_is_validated_and_scaled() -> None:
    assert PollPolicy().callback_interval == 60.0
    assert PollPolicy(callback_interval=90.0).scaled(0.01).callback_interval == pytest.approx(0.9)
    with pytest.raises(ConfigurationError):
        PollPolicy(callback_interval=0)


# -- batches ------------------------------------------------------------------------------


async def test_a_batch_with_callbacks_needs_about_one_status_request_per_job(
    held: HeldClock, held_gateway: FakeGateway, tmp_path: Path
) -> None:
    jobs = 12
    async with (
        Receiver() as receiver,
        Client(api_key=KEY, base_url=held_gateway.url, clock=held, webhook_url=receiver.url) as c,
    ):
        receiver.client = c
        requests = [VideoRequest(prompt=f"p{i}", model="viduq1") for i in range(jobs)]
        outcomes: list[object] = []

        async def run() -> None:
            async with c.generate_many(requests, output_dir=tmp_path) as batch:
                outcomes.extend([outcome async for outcome in batch])

        async with anyio.create_task_group() as group:
            group.start_soon(run)
            await _until(lambda: held_gateway.stats.creates == jobs)
            await _settle()
            held.advance(25.0)
            await _until(lambda: len(outcomes) == jobs, 10)
    assert receiver.answers == [True] * jobs
    assert _statuses(held_gateway) == jobs
    assert held_gateway.stats.downloads_completed == jobs
    assert len(list(tmp_path.glob("*.mp4"))) == jobs


# -- secrets ------------------------------------------------------------------------------


async def test_the_secret_and_key_appear_in_no_repr_or_log(
    held: HeldClock, held_gateway: FakeGateway, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        Receiver() as receiver,
        Client(
            api_key=KEY,
            base_url=held_gateway.url,
            clock=held,
            webhook_url=receiver.url,
            webhook_secret=SECRET,
        ) as c,
    ):
        receiver.client = c
        assert c.webhook_secret == SECRET
        async with anyio.create_task_group() as group:
            group.start_soon(partial(c.generate, prompt="a", model="viduq1", output=tmp_path))
            await _settle()
            held.advance(25.0)
            await _until(lambda: held_gateway.stats.downloads_completed == 1)
        shown = repr(c) + str(vars(c).get("_connection")) + caplog.text
        shown += "".join(str(r.__dict__) for r in caplog.records)
    assert receiver.answers == [True]
    assert SECRET not in shown
    assert KEY not in shown
    with pytest.raises(ConfigurationError) as raised:
        Client(api_key=KEY, base_url=held_gateway.url, webhook_url="nope", webhook_secret=SECRET)
    assert SECRET not in str(raised.value)
    assert KEY not in str(raised.value)


def test_the_webhook_secret_is_scrubbed_like_the_key() -> None:
    from asyncvideo._transport._connection import Scrubber

    scrub = Scrubber(KEY, SECRET)
    echoed = f"bad signature {SECRET} for key {KEY}"
    assert SECRET not in scrub.text(echoed)
    assert KEY not in scrub.text(echoed)
    assert SECRET.encode() not in scrub.body(echoed.encode())


def test_the_references_kept_are_bounded_oldest_first() -> None:
    tasks = CallbackTasks(limit=2)
    for n in range(3):
        tasks.add(f"key-{n}", "vidu", f"task-{n}")
    assert tasks.task_for("key-0") is None
    assert tasks.task_for("key-2") == ("vidu", "task-2")
    assert not tasks.expects_callback("vidu", "task-0")
    assert tasks.expects_callback("vidu", "task-1")
    tasks.forget("vidu", "task-1")
    assert tasks.task_for("key-1") is None
    assert len(tasks) == 1


def test_the_token_is_read_back_from_the_callback_url() -> None:
    assert token_from_callback_url("http://h/hook?a=1&asyncvideo_token=k%201") == "k 1"
    assert token_from_callback_url("http://h/hook?a=1") is None
    assert token_from_callback_url(f"{CALLBACK_TOKEN_PARAM}=abc") == "abc"


async def test_a_callback_to_the_parent_wakes_a_wait_on_a_derived_client(
    held: HeldClock, held_gateway: FakeGateway
) -> None:
    async with Client(
        api_key=KEY, base_url=held_gateway.url, clock=held, webhook_url=REMOTE_HOOK
    ) as parent:
        patient = parent.with_options(poll_policy=PollPolicy(deadline=3_000.0))
        job = await patient.submit(prompt="a", model="viduq1", idempotency_key="key-a")
        async with anyio.create_task_group() as group:
            done: list[Job] = []

            async def waiter() -> None:
                done.append(await patient.wait(job))

            group.start_soon(waiter)
            await _settle()
            held.advance(25.0)
            assert parent.notify(job, token="key-a") is True
            await _until(lambda: bool(done))
        assert done[0].state is JobState.SUCCEEDED
        assert _statuses(held_gateway) == 1
        await patient.aclose()
