"""Issue 9, points 2 and 3: a wait's deadline holds against work in flight, and
what a gateway sends is bounded. Each test scripts one hostile status endpoint
on loopback (an aiohttp app) and checks what a user sees: when the call
returned, the error type, the memory it could have taken.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from asyncvideo import (
    AiohttpTransport,
    Client,
    Job,
    JobState,
    Limits,
    ManualClock,
    PollPolicy,
    RetryPolicy,
    _states,
)
from asyncvideo._poller import PollUpdate
from asyncvideo._states import parse_state
from asyncvideo._transport import HTTPRequest, HTTPResponse
from asyncvideo.errors import (
    APIError,
    CreateOutcomeUnknown,
    JobTimeoutError,
    ProtocolError,
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


# -- point 3: bounded bodies --------------------------------------------------------------


async def test_point_3_a_status_body_over_the_limit_is_a_protocol_error_not_read_whole(
    start_server: StartServer,
) -> None:
    sent = 0

    async def huge(request: web.Request) -> web.StreamResponse:
        # Close-delimited, no Content-Length: only reading can find the size out.
        nonlocal sent
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(b'{"id": "video_1", "status": "queued", "pad": "')
            for _ in range(64):  # 64 MiB offered
                await response.write(b"x" * (1024 * 1024))
                sent += 1
        except (ConnectionError, RuntimeError):
            pass
        return response

    limits = Limits(max_response_bytes=256 * 1024)
    url = await start_server(huge)
    async with Client(api_key=KEY, base_url=url, clock=ManualClock(), limits=limits) as client:
        with pytest.raises(ProtocolError) as caught:
            await client.refresh(queued())
    assert str(caught.value) == (
        "the answer to GET /v1/videos/video_1 is larger than 262144 bytes "
        "(Limits.max_response_bytes); not read"
    )
    assert caught.value.status == 200
    assert sent < 64  # the client stopped reading and hung up


async def test_point_3_an_announced_oversized_create_answer_is_an_unknown_outcome_with_the_key(
    start_server: StartServer,
) -> None:
    creates = 0

    async def huge(request: web.Request) -> web.StreamResponse:
        nonlocal creates
        creates += 1
        body = json.dumps({"id": "video_1", "status": "queued", "pad": "x" * 300_000})
        return web.Response(text=body, content_type="application/json")

    limits = Limits(max_response_bytes=256 * 1024)
    url = await start_server(huge)
    async with Client(api_key=KEY, base_url=url, clock=ManualClock(), limits=limits) as client:
        with pytest.raises(CreateOutcomeUnknown) as caught:
            await client.submit(prompt="a cat", model="sora-2", idempotency_key="key-3")
    assert caught.value.idempotency_key == "key-3"
    cause = caught.value.__cause__
    assert isinstance(cause, ProtocolError)
    assert cause.status == 200
    assert "larger than 262144 bytes" in str(cause)
    assert creates == 1


def padded_status(size: int) -> bytes:
    """A status answer of exactly ``size`` bytes."""
    head, tail = b'{"id": "video_1", "status": "queued", "pad": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def test_point_3_an_answer_of_exactly_the_limit_is_read(
    start_server: StartServer,
) -> None:
    limit = 256 * 1024

    async def exact(request: web.Request) -> web.StreamResponse:
        return web.Response(body=padded_status(limit), content_type="application/json")

    limits = Limits(max_response_bytes=limit)
    url = await start_server(exact)
    async with Client(api_key=KEY, base_url=url, clock=ManualClock(), limits=limits) as client:
        job = await client.refresh(queued())
    assert job.native_status == "queued"


class CountingStreams:
    """The default transport, counting the bodies the SDK started to stream.

    With ``piece``, every body arrives in chunks of that many bytes.
    """

    def __init__(self, piece: int = 0) -> None:
        self.inner = AiohttpTransport()
        self.piece = piece
        self.streamed = 0

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        return CountedResponse(await self.inner.send(request), self)

    async def aclose(self) -> None:
        await self.inner.aclose()


class CountedResponse:
    def __init__(self, response: HTTPResponse, transport: CountingStreams) -> None:
        self.response = response
        self.transport = transport
        self.status = response.status
        self.headers = response.headers

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        self.transport.streamed += 1
        piece = self.transport.piece
        async for chunk in self.response.iter_bytes():
            if not piece:
                yield chunk
                continue
            for start in range(0, len(chunk), piece):
                yield chunk[start : start + piece]

    async def read(self, limit: int | None = None) -> bytes:
        return await self.response.read(limit)

    async def aclose(self) -> None:
        await self.response.aclose()


async def test_point_3_an_announced_oversized_answer_is_refused_before_a_byte_is_read(
    start_server: StartServer,
) -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=padded_status(300_000), content_type="application/json")

    transport = CountingStreams()
    limits = Limits(max_response_bytes=256 * 1024)
    url = await start_server(big)
    async with Client(
        api_key=KEY, base_url=url, clock=ManualClock(), limits=limits, transport=transport
    ) as client:
        with pytest.raises(ProtocolError) as caught:
            await client.refresh(queued())
    assert str(caught.value) == (
        "the answer to GET /v1/videos/video_1 is larger than 262144 bytes "
        "(Limits.max_response_bytes); not read"
    )
    assert caught.value.status == 200
    assert transport.streamed == 0


@pytest.mark.parametrize("status", [400, 401])
async def test_point_3_an_oversized_error_body_keeps_its_status(
    start_server: StartServer, status: int
) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text="denied " + "x" * 1_000_000)

    # Larger than max_response_bytes too: an error answer is cut, never refused.
    limits = Limits(max_response_bytes=256 * 1024)
    url = await start_server(huge)
    async with Client(api_key=KEY, base_url=url, clock=ManualClock(), limits=limits) as client:
        with pytest.raises(APIError) as caught:
            await client.refresh(queued())
    assert caught.value.status == status


@pytest.mark.parametrize("call", ["refresh", "wait", "submit"])
async def test_point_3_a_100_kb_nested_json_body_is_a_typed_error(
    start_server: StartServer, call: str
) -> None:
    async def deep(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"[" * 100_000, content_type="application/json")

    clock = ManualClock()
    url = await start_server(deep)
    async with Client(api_key=KEY, base_url=url, clock=clock) as client:
        if call == "refresh":
            with pytest.raises(ProtocolError):
                await client.refresh(queued())
        elif call == "wait":  # unreadable answers are polled again until the deadline
            with pytest.raises(JobTimeoutError):
                await client.wait(queued(), timeout=10)
        else:
            with pytest.raises(CreateOutcomeUnknown) as caught:
                await client.submit(prompt="a cat", model="sora-2", idempotency_key="key-d")
            assert caught.value.idempotency_key == "key-d"


def test_point_3_unknown_status_words_are_remembered_in_bounded_memory(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_states, "_unknown_words_logged", set())
    with caplog.at_level(logging.WARNING, logger="asyncvideo"):
        for i in range(2_000):
            assert parse_state(f"{i:05d}" + "w" * 10_000) is None
        assert parse_state("01999" + "w" * 10_000) is None  # remembered: not logged again
    assert len(_states._unknown_words_logged) <= 256
    assert all(len(word) <= 64 for word in _states._unknown_words_logged)
    assert len(caplog.records) == 2_000  # each new word once; memory stays bounded
    assert all(len(record.getMessage()) < 200 for record in caplog.records)


async def test_point_3_an_oversized_error_body_in_small_chunks_reads_as_one_text(
    start_server: StartServer,
) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        return web.Response(status=401, text="denied: " + "0123456789" * 100_000)

    url = await start_server(huge)
    transport = CountingStreams(piece=7)
    async with Client(api_key=KEY, base_url=url, clock=ManualClock(), transport=transport) as c:
        with pytest.raises(APIError) as caught:
            await c.refresh(queued())
    assert caught.value.status == 401
    assert "denied: 0123456789012345678901234567890123456789" in str(caught.value)


async def test_point_3_a_status_answer_in_small_chunks_is_read_whole(
    start_server: StartServer,
) -> None:
    async def status(request: web.Request) -> web.StreamResponse:
        return web.json_response({"id": "video_1", "status": "in_progress", "progress": 42})

    transport = CountingStreams(piece=7)
    url = await start_server(status)
    async with Client(api_key=KEY, base_url=url, clock=ManualClock(), transport=transport) as c:
        job = await c.refresh(queued())
    assert (job.native_status, job.progress) == ("in_progress", 42)
    assert transport.streamed == 1


async def test_point_2_the_poll_sent_at_the_deadline_gets_its_short_grace(
    start_server: StartServer,
) -> None:
    # A real clock: the one poll goes out at the 3 s deadline and is answered at
    # once; the last look may take 5% of the timeout (150 ms: room for a loaded
    # machine), so its answer counts.
    async def done(request: web.Request) -> web.StreamResponse:
        return web.json_response({"id": "video_1", "status": "completed"})

    url = await start_server(done)
    policy = PollPolicy(first_delay=3.0, steps=(), final_interval=3.0, jitter=0.0)
    async with Client(api_key=KEY, base_url=url, poll_policy=policy) as client:
        job = await client.wait(queued(), timeout=3.0)
    assert job.state is JobState.SUCCEEDED


class Stalls:
    """A transport of the user's that never answers and ignores every timeout it is given."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport()
        self.sends = 0
        self.cancelled = 0

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        self.sends += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_point_2_a_wait_deadline_holds_whatever_the_transport_does_with_timeouts() -> None:
    transport = Stalls()
    policy = PollPolicy(first_delay=0.05, steps=(), final_interval=0.05, jitter=0.0)
    async with Client(
        api_key=KEY, base_url="http://127.0.0.1:9", poll_policy=policy, transport=transport
    ) as client:
        started = time.monotonic()
        with anyio.fail_after(5), pytest.raises(JobTimeoutError):
            await client.wait(queued(), timeout=0.4)
        took = time.monotonic() - started
        await asyncio.sleep(0)
        assert transport.cancelled == 1  # cut, not left running until the client closes
    assert transport.sends == 1  # the poll in flight was cut at the deadline
    assert 0.39 <= took < 0.4 + 0.25


async def test_point_2_a_poll_cut_at_the_deadline_ends_with_the_last_snapshot() -> None:
    transport = Stalls()
    policy = PollPolicy(first_delay=0.05, steps=(), final_interval=0.05, jitter=0.0)
    async with Client(
        api_key=KEY, base_url="http://127.0.0.1:9", poll_policy=policy, transport=transport
    ) as client:
        job = queued()
        updates: list[PollUpdate] = []
        ended = anyio.Event()

        def listener(update: PollUpdate) -> None:
            updates.append(update)
            ended.set()

        client._poller.watch(job, policy=policy, deadline=0.2, listener=listener)
        with anyio.fail_after(5):
            await ended.wait()
    (update,) = updates
    assert isinstance(update.error, JobTimeoutError)
    assert update.job is job
    assert update.previous is job
    assert update.error.job is job
