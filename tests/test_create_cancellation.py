"""A create cancelled by plain asyncio (``wait_for``, ``Task.cancel``) is seen through.

The anyio shield around a create defers a cancel scope's cancel, but not a
native asyncio cancellation; the create must still get its answer, and the
task it made must be findable (its id and key logged) before the cancel goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import anyio
import pytest
from aiohttp import web

from asyncvideo import AiohttpTransport, Client, ManualClock, Timeouts
from asyncvideo._transport import HTTPRequest, HTTPResponse

pytestmark = pytest.mark.anyio

ANSWER_AFTER = 0.3


class SlowCreates:
    """A gateway whose create answers only after ``ANSWER_AFTER`` seconds."""

    def __init__(self) -> None:
        self.creates = 0
        self.url = ""

    async def create(self, request: web.Request) -> web.Response:
        self.creates += 1
        await asyncio.sleep(ANSWER_AFTER)
        return web.json_response({"id": f"video_slow_{self.creates}", "status": "queued"})


@pytest.fixture
async def slow_creates() -> AsyncIterator[SlowCreates]:
    gateway = SlowCreates()
    app = web.Application()
    app.router.add_post("/v1/videos", gateway.create)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    gateway.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield gateway
    await runner.cleanup()


def pending_tasks() -> set[asyncio.Task[object]]:
    return {
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and "RequestHandler" not in getattr(task.get_coro(), "__qualname__", "")
    }


async def test_a_create_under_wait_for_is_seen_through_and_its_task_logged(
    slow_creates: SlowCreates, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncvideo")
    before = pending_tasks()
    async with Client(api_key="sk-secret", base_url=slow_creates.url, clock=ManualClock()) as c:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                c.submit(prompt="a cat", model="sora-2", idempotency_key="key-123"), 0.05
            )
        assert pending_tasks() == before  # the exchange is over, not left running
    assert slow_creates.creates == 1
    assert [record.getMessage() for record in caplog.records] == [
        "a create was cancelled after it was sent; the gateway made task video_slow_1 "
        "(idempotency key key-123)"
    ]
    assert "sk-secret" not in caplog.text


async def test_a_create_cancelled_twice_still_waits_for_its_answer(
    slow_creates: SlowCreates, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncvideo")
    async with Client(api_key="sk-secret", base_url=slow_creates.url, clock=ManualClock()) as c:
        task = asyncio.get_running_loop().create_task(
            c.submit(prompt="a dog", model="sora-2", idempotency_key="key-456")
        )
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.05)
        task.cancel()  # an impatient caller: the create is still seen through
        with pytest.raises(asyncio.CancelledError):
            await task
    assert slow_creates.creates == 1
    assert "video_slow_1" in caplog.text
    assert "key-456" in caplog.text


class NeverAnswers:
    """A transport of the user's that ignores ``Timeouts.request``: its send never returns."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport()
        self.sends = 0

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        self.sends += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_create_with_no_answer_is_waited_for_up_to_the_request_timeout_then_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncvideo")
    before = pending_tasks()
    transport = NeverAnswers()
    async with Client(
        api_key="sk-secret",
        base_url="http://127.0.0.1:9",
        clock=ManualClock(),
        transport=transport,
        timeouts=Timeouts(request=0.3),
    ) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                client.submit(prompt="a cat", model="sora-2", idempotency_key="key-7"), 0.05
            )
        # Held for Timeouts.request, not for ever, and not given up early.
        assert 0.3 <= loop.time() - started < 2.0
        assert pending_tasks() == before  # the exchange was cancelled, not left running
    assert transport.sends == 1
    assert [record.getMessage() for record in caplog.records] == [
        "a create was cancelled with no answer in time; it may have made a task "
        "(idempotency key key-7)"
    ]


async def test_a_create_that_fails_after_its_caller_left_is_logged_with_the_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncvideo")

    async def create(request: web.Request) -> web.Response:
        await asyncio.sleep(ANSWER_AFTER)
        return web.json_response({"error": {"message": "upstream broke"}}, status=400)

    app = web.Application()
    app.router.add_post("/v1/videos", create)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with Client(api_key="sk-secret", base_url=url, clock=ManualClock()) as client:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(
                    client.submit(prompt="a cat", model="sora-2", idempotency_key="key-8"), 0.05
                )
    finally:
        await runner.cleanup()
    (message,) = [record.getMessage() for record in caplog.records]
    assert message.startswith("a create was cancelled and then failed (InvalidRequestError: ")
    assert "upstream broke" in message
    assert message.endswith("); it may have made a task (idempotency key key-8)")


async def test_a_create_under_an_anyio_timeout_returns_its_job_before_the_cancel(
    slow_creates: SlowCreates, caplog: pytest.LogCaptureFixture
) -> None:
    # An anyio cancel scope (a batch closing, move_on_after) is held off by the shield:
    # the create returns its job to the caller, so nothing is lost and nothing is logged.
    caplog.set_level(logging.WARNING, logger="asyncvideo")
    async with Client(api_key="sk-secret", base_url=slow_creates.url, clock=ManualClock()) as c:
        jobs = []
        with anyio.move_on_after(0.05):
            jobs.append(await c.submit(prompt="a cat", model="sora-2"))
    assert [job.id for job in jobs] == ["video_slow_1"]
    assert caplog.records == []
