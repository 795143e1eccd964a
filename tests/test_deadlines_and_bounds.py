"""Issue 9, points 2 and 3: a wait's deadline holds against work in flight, and
what a gateway sends is bounded. Each test scripts one hostile status endpoint
on loopback (an aiohttp app) and checks what a user sees: when the call
returned, the error type, the memory it could have taken.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from asyncvideo import Client, Job, JobState, ManualClock, PollPolicy, RetryPolicy
from asyncvideo.errors import (
    JobTimeoutError,
    ServerError,
)

pytestmark = pytest.mark.anyio

KEY = "sk-deadline-test"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
StartServer = Callable[[Handler], Awaitable[str]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Serves every path with one scripted handler on 127.0.0.1; returns the base URL."""
    servers: list[TestServer] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


def queued(task_id: str = "video_1") -> Job:
    return Job(id=task_id, model="sora-2", provider="sora", state=JobState.QUEUED)


# -- point 2: deadlines hold --------------------------------------------------------------


async def test_point_2_wait_deadline_holds_against_a_stalling_status_endpoint(
    start_server: StartServer,
) -> None:
    # A real clock and tight real deadlines: a stall takes no virtual time.
    never = asyncio.Event()
    asked = 0

    async def stall(request: web.Request) -> web.StreamResponse:
        nonlocal asked
        asked += 1
        await never.wait()  # the default Timeouts.request (120 s) would end this
        return web.json_response({"id": "video_1", "status": "queued"})

    url = await start_server(stall)
    policy = PollPolicy(first_delay=0.05, steps=(), final_interval=0.05, jitter=0.0)
    async with Client(api_key=KEY, base_url=url, poll_policy=policy) as client:
        started = time.monotonic()
        with anyio.fail_after(5), pytest.raises(JobTimeoutError) as caught:
            await client.wait(queued(), timeout=0.4)
        took = time.monotonic() - started
    never.set()
    assert caught.value.timeout == 0.4
    assert caught.value.job.id == "video_1"
    assert asked == 1  # the first poll stalled; the deadline cut it
    assert 0.39 <= took < 0.4 + 0.25


async def test_point_2_request_retries_never_sleep_past_a_waits_deadline(
    start_server: StartServer,
) -> None:
    asked = 0

    async def busy(request: web.Request) -> web.StreamResponse:
        nonlocal asked
        asked += 1
        return web.json_response({"error": "busy"}, status=429, headers={"Retry-After": "100"})

    clock = ManualClock()
    async with Client(api_key=KEY, base_url=await start_server(busy), clock=clock) as client:
        with pytest.raises(JobTimeoutError):
            await client.wait(queued(), timeout=2)
        assert clock.monotonic() <= 2.1  # not 2 + 3 * 100 s of Retry-After
        assert asked == 1  # the retry could only have started past the deadline


async def test_point_2_a_default_600_s_wait_does_not_overrun_by_minutes(
    start_server: StartServer,
) -> None:
    async def flaky(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "120"})

    clock = ManualClock()
    async with Client(api_key=KEY, base_url=await start_server(flaky), clock=clock) as client:
        with pytest.raises(JobTimeoutError) as caught:
            await client.wait(queued())
    assert caught.value.timeout == 600
    assert 600 <= clock.monotonic() <= 601


async def test_point_2_refresh_without_a_deadline_keeps_its_retries(
    start_server: StartServer,
) -> None:
    asked = 0

    async def busy(request: web.Request) -> web.StreamResponse:
        nonlocal asked
        asked += 1
        return web.json_response({"error": "busy"}, status=503)

    retry = RetryPolicy(max_attempts=3)
    url = await start_server(busy)
    async with Client(api_key=KEY, base_url=url, clock=ManualClock(), retry_policy=retry) as client:
        with pytest.raises(ServerError):
            await client.refresh(queued())
    assert asked == 3
