"""Hostile use of the web-app surfaces: callback senders, streams, refs, derived clients.

Each test is named after the failure it pins. Hostile peers are real servers
on loopback scripted for one fault; time is a HeldClock or ManualClock.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from asyncvideo import Client, Job, JobState, ManualClock, webhooks
from asyncvideo.errors import CreateOutcomeUnknown, DownloadError, ValidationError
from asyncvideo.testing import FakeGateway, make_mp4
from asyncvideo.webhooks import WebhookReceiver, sign

from .conftest import HeldClock

pytestmark = pytest.mark.anyio

KEY = "sk-hostile-test-key-0123456789"
SECRET = "whsec-hostile-secret-0123456789"
REMOTE_HOOK = "https://app.example/hooks/video"


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.001)


async def _until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    with anyio.fail_after(seconds):
        while not check():  # noqa: ASYNC110 - the condition is a counter, not an event
            await asyncio.sleep(0.005)


def _statuses(gateway: FakeGateway) -> int:
    return gateway.stats.requests["status"]


@pytest.fixture
async def held_gateway(held: HeldClock) -> AsyncIterator[FakeGateway]:
    async with FakeGateway(clock=held, api_key=KEY, durations=200.0, video_bytes=16 * 1024) as gw:
        yield gw


async def _raw_post(port: int, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """POST with header bytes exactly as given (aiohttp's client would refuse some)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [b"POST " + path.encode() + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"Content-Length: " + str(len(body)).encode())
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


@pytest.fixture
async def hook_app(held: HeldClock) -> AsyncIterator[tuple[int, Client]]:
    async with Client(
        api_key=KEY, base_url="http://127.0.0.1:9", clock=held, webhook_secret=SECRET
    ) as client:
        app = web.Application()
        app.add_subapp("/hooks", webhooks.aiohttp_app(client))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield runner.addresses[0][1], client
        finally:
            await runner.cleanup()


# -- callback senders ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    ["v1=\u00e9".encode(), b"v1=" + b"\xff" * 64, b"v1=" + "é".encode() * 32],
)
async def test_a_non_ascii_signature_is_refused_not_a_server_error(
    held: HeldClock, hook_app: tuple[int, Client], signature: bytes
) -> None:
    port, _ = hook_app
    body = b'{"id": "task_1", "status": "completed"}'
    headers = sign(body, SECRET, timestamp=held.time())
    sent = [(b"X-Asyncvideo-Timestamp", headers["X-Asyncvideo-Timestamp"].encode())]
    sent.append((b"X-Asyncvideo-Signature", signature))
    assert await _raw_post(port, "/hooks", sent, body) == 401


async def test_a_callback_storm_for_a_running_job_does_not_become_a_poll_loop(
    held: HeldClock, held_gateway: FakeGateway
) -> None:
    async with Client(
        api_key=KEY,
        base_url=held_gateway.url,
        clock=held,
        webhook_url=REMOTE_HOOK,
        webhook_secret=SECRET,
    ) as client:
        receiver = WebhookReceiver(client)
        job = await client.submit(prompt="a", model="viduq1", idempotency_key="storm")
        body = json.dumps({"id": job.id, "state": "processing", "payload": "storm"}).encode()
        async with anyio.create_task_group() as group:
            group.start_soon(client.wait, job)
            await _settle()
            for index in range(30):  # one distinct, validly signed delivery a second
                headers = sign(body, SECRET, timestamp=held.time(), delivery_id=f"d{index}")
                result = await receiver.handle(body, headers)
                assert result.status == 200
                await _settle()
                held.advance(1.0)
            polled = _statuses(held_gateway)
            group.cancel_scope.cancel()
    # Woken polls at least the first interval (5 s) apart: at 0, 5, ... 25 s.
    assert polled == 6


# -- notify ----------------------------------------------------------------------------------


async def test_notify_from_another_thread_wakes_the_wait(held: HeldClock) -> None:
    async with (
        FakeGateway(clock=held, api_key=KEY, durations=20.0) as gateway,
        Client(api_key=KEY, base_url=gateway.url, clock=held, webhook_url=REMOTE_HOOK) as client,
    ):
        job = await client.submit(prompt="a", model="viduq1", idempotency_key="thread")
        done: list[Job] = []

        async def wait() -> None:
            done.append(await client.wait(job))

        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            await _settle()
            held.advance(25.0)  # the task has ended; the first safety poll is a minute away
            snapshot = Job(id=job.id, model="viduq1", provider="vidu", state=JobState.SUCCEEDED)
            woken = await anyio.to_thread.run_sync(lambda: client.notify(snapshot, token="thread"))
            await _until(lambda: bool(done), seconds=2.0)
    assert woken is True
    assert done[0].state is JobState.SUCCEEDED
    assert _statuses(gateway) == 1


# -- job refs ----------------------------------------------------------------------------------


def _ref_of(encoded_json: bytes) -> str:
    return "av1." + base64.urlsafe_b64encode(encoded_json).decode().rstrip("=")


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[str]]]:
    """A gateway that records each path and answers every request with a lone-surrogate id."""
    paths: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        paths.append(request.raw_path)
        return web.Response(body=b'{"id": "\\ud800", "status": "queued"}')

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", paths
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "ref",
    [
        _ref_of(b"[" * 3000),  # nests past the JSON reader's recursion limit
        _ref_of(json.dumps(["sora", "sora-2", "\ud800", "openai"]).encode()),
    ],
    ids=["deep", "lone-surrogate"],
)
async def test_a_hostile_ref_is_a_validation_error_before_any_request(
    recorder: tuple[str, list[str]], ref: str
) -> None:
    url, paths = recorder
    async with Client(api_key=KEY, base_url=url, clock=ManualClock()) as client:
        with pytest.raises(ValidationError):
            await client.get(ref)
    assert paths == []


async def test_a_create_answer_naming_an_unencodable_id_is_an_unknown_outcome(
    recorder: tuple[str, list[str]],
) -> None:
    url, paths = recorder
    async with Client(api_key=KEY, base_url=url, clock=ManualClock()) as client:
        with pytest.raises(CreateOutcomeUnknown) as caught:
            await client.submit(prompt="a cat", model="sora-2", idempotency_key="key-s")
        assert caught.value.idempotency_key == "key-s"
        job = Job(id="\ud800", model="sora-2", provider="sora", state=JobState.SUCCEEDED)
        with pytest.raises(ValidationError):
            await client.refresh(job)
        with pytest.raises(ValidationError):
            await client.open_video(job).__aenter__()
    assert paths == ["/v1/videos"]


async def test_a_callback_that_arrives_before_the_wait_starts_is_not_lost(held: HeldClock) -> None:
    # The task ends and calls back while the create's caller is still busy (an
    # on_event handler, a journal write): the wait that follows must not sleep
    # through the safety interval for a callback that already came.
    async with (
        FakeGateway(clock=held, api_key=KEY, durations=20.0) as gateway,
        Client(api_key=KEY, base_url=gateway.url, clock=held, webhook_url=REMOTE_HOOK) as client,
    ):
        job = await client.submit(prompt="a", model="viduq1", idempotency_key="early")
        held.advance(25.0)
        upstream = Job(id="vidu-own-id", model="viduq1", provider="vidu", state=JobState.SUCCEEDED)
        assert client.notify(upstream, token="early") is False  # nobody waits yet
        done: list[Job] = []

        async def wait() -> None:
            done.append(await client.wait(job))

        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            await _until(lambda: bool(done), seconds=2.0)
    assert done[0].state is JobState.SUCCEEDED
    assert _statuses(gateway) == 1
    assert held.monotonic() == 25.0  # no safety interval was waited for


@pytest.mark.parametrize("secret", ["", []], ids=["empty-text", "empty-list"])
async def test_an_empty_receiver_secret_is_refused_not_a_silent_unsigned_receiver(
    secret: str | list[str],
) -> None:
    # secret=os.environ.get("HOOK_SECRET", "") with the variable unset must not turn
    # verification off without a word.
    async with Client(api_key=KEY, base_url="http://127.0.0.1:9") as client:
        with pytest.raises(ValidationError):
            WebhookReceiver(client, secret=secret)
        with pytest.raises(ValidationError):
            webhooks.aiohttp_app(client, secret=secret)


# -- streams -----------------------------------------------------------------------------------

VIDEO_V1 = make_mp4(40_000, "version 1")
VIDEO_V2 = make_mp4(40_000, "version 2")


@pytest.fixture
async def changing_cdn() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A CDN that drops the first answer at 12,000 bytes of v1, then ignores If-Range:
    it answers the resume with 206 and the rest of v2, under v2's ETag."""
    seen: list[web.Request] = []

    async def serve(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        if "Range" not in request.headers and len(seen) == 1:
            response = web.StreamResponse(
                headers={"Content-Length": str(len(VIDEO_V1)), "ETag": '"v1"'}
            )
            response.content_type = "video/mp4"
            await response.prepare(request)
            await response.write(VIDEO_V1[:12_000])
            assert request.transport is not None
            request.transport.close()
            return response
        if "Range" not in request.headers:
            return web.Response(body=VIDEO_V2, content_type="video/mp4", headers={"ETag": '"v2"'})
        start = int(request.headers["Range"][6:].rstrip("-"))
        end = len(VIDEO_V2) - 1
        return web.Response(
            status=206,
            body=VIDEO_V2[start:],
            content_type="video/mp4",
            headers={"ETag": '"v2"', "Content-Range": f"bytes {start}-{end}/{end + 1}"},
        )

    app = web.Application()
    app.router.add_get("/{name:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/", seen
    finally:
        await runner.cleanup()


async def _stream_into(client: Client, job: Job, into: list[bytes]) -> None:
    async with client.open_video(job) as stream:
        async for chunk in stream:
            into.append(chunk)  # noqa: PERF401 (kept as they come, up to an error)


def _cdn_client(url: str) -> Client:
    return Client(api_key=KEY, base_url=url, clock=ManualClock())


def _cdn_job(url: str) -> Job:
    return Job(
        id="t1", model="kling-v1", provider="kling", state=JobState.SUCCEEDED, video_url=url + "v"
    )


async def test_a_resume_under_another_etag_is_not_spliced_into_the_stream(
    changing_cdn: tuple[str, list[web.Request]],
) -> None:
    url, seen = changing_cdn
    yielded: list[bytes] = []
    async with _cdn_client(url) as client:
        with pytest.raises(DownloadError):
            await _stream_into(client, _cdn_job(url), yielded)
    assert b"".join(yielded) == VIDEO_V1[:12_000]  # no byte of v2 after v1's
    assert [r.headers.get("If-Range") for r in seen] == [None, '"v1"']


async def test_a_resume_under_another_etag_restarts_the_file(
    changing_cdn: tuple[str, list[web.Request]], tmp_path: Path
) -> None:
    url, _ = changing_cdn
    async with _cdn_client(url) as client:
        path = await client.download(_cdn_job(url), tmp_path / "v.mp4")
    assert path.read_bytes() == VIDEO_V2  # whole, one version


async def test_a_resume_announcing_another_total_length_is_not_spliced_into_the_stream() -> None:
    # Same ETag, but the range says the file is 50,000 bytes where the first answer
    # said 40,000: a web response already sent Content-Length 40,000.
    seen: list[web.Request] = []

    async def serve(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        if "Range" not in request.headers:
            response = web.StreamResponse(
                headers={"Content-Length": str(len(VIDEO_V1)), "ETag": '"v1"'}
            )
            response.content_type = "video/mp4"
            await response.prepare(request)
            await response.write(VIDEO_V1[:12_000])
            assert request.transport is not None
            request.transport.close()
            return response
        longer = VIDEO_V1 + bytes(10_000)
        return web.Response(
            status=206,
            body=longer[12_000:],
            content_type="video/mp4",
            headers={
                "ETag": '"v1"',
                "Content-Range": f"bytes 12000-{len(longer) - 1}/{len(longer)}",
            },
        )

    app = web.Application()
    app.router.add_get("/{name:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    yielded: list[bytes] = []
    try:
        async with _cdn_client(url) as client:
            with pytest.raises(DownloadError):
                await _stream_into(client, _cdn_job(url), yielded)
    finally:
        await runner.cleanup()
    assert b"".join(yielded) == VIDEO_V1[:12_000]


@pytest.mark.parametrize("timestamp", [float("nan"), float("inf"), -1.0, 1e13])
def test_sign_refuses_a_timestamp_no_receiver_could_read(timestamp: float) -> None:
    with pytest.raises(ValidationError):
        sign(b"{}", SECRET, timestamp=timestamp)


async def test_an_unsigned_receiver_refuses_a_tolerance_that_breaks_its_replay_memory() -> None:
    async with Client(api_key=KEY, base_url="http://127.0.0.1:9") as client:
        for tolerance in (float("nan"), float("inf"), 0.0, -5.0):
            with pytest.raises(ValidationError):
                WebhookReceiver(client, tolerance=tolerance)


def test_verify_with_a_nan_now_refuses_instead_of_accepting_any_timestamp() -> None:
    verifier = webhooks.WebhookVerifier(SECRET)
    stale = sign(b"{}", SECRET, timestamp=1.0)
    with pytest.raises(ValidationError):
        verifier.verify(b"{}", stale, now=float("nan"))


async def test_a_callback_that_beats_the_create_answer_is_not_lost(held: HeldClock) -> None:
    # A task that fails at once can call back before the create's answer arrives,
    # when our reference names no task yet.
    async with (
        FakeGateway(clock=held, api_key=KEY, durations=20.0, latency=0.05) as gateway,
        Client(api_key=KEY, base_url=gateway.url, clock=held, webhook_url=REMOTE_HOOK) as client,
    ):
        submitted: list[Job] = []

        async def submit() -> None:
            submitted.append(await client.submit(prompt="a", model="viduq1", idempotency_key="k"))

        async with anyio.create_task_group() as group:
            group.start_soon(submit)
            await _until(lambda: gateway.stats.in_flight["create"] == 1)
            upstream = Job(id="vidu-own", model="viduq1", provider="vidu", state=JobState.FAILED)
            assert client.notify(upstream, token="k") is False
        held.advance(25.0)
        with anyio.fail_after(2.0):
            done = await client.wait(submitted[0])
    assert done.state is JobState.SUCCEEDED
    assert _statuses(gateway) == 1
    assert held.monotonic() == 25.0


async def test_a_callback_from_another_thread_before_the_wait_starts_is_not_lost(
    held: HeldClock,
) -> None:
    async with (
        FakeGateway(clock=held, api_key=KEY, durations=20.0) as gateway,
        Client(api_key=KEY, base_url=gateway.url, clock=held, webhook_url=REMOTE_HOOK) as client,
    ):
        first = await client.submit(prompt="a", model="viduq1", idempotency_key="one")
        job = await client.submit(prompt="b", model="viduq1", idempotency_key="two")
        done: list[Job] = []
        async with anyio.create_task_group() as group:
            group.start_soon(client.wait, first)  # the poller runs on this loop
            await _settle()
            held.advance(25.0)  # both tasks have ended; the safety polls are a minute away
            snapshot = Job(id=job.id, model="viduq1", provider="vidu", state=JobState.SUCCEEDED)
            handed = await anyio.to_thread.run_sync(lambda: client.notify(snapshot, token="two"))
            await _settle()  # the loop has run the notification: nobody waited, it is noted

            async def wait() -> None:
                done.append(await client.wait(job))

            group.start_soon(wait)
            await _until(lambda: bool(done), seconds=2.0)
            group.cancel_scope.cancel()
    assert handed is True
    assert done[0].state is JobState.SUCCEEDED
    assert held.monotonic() == 25.0  # polled at once, not at its safety interval
