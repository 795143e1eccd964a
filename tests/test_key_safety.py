"""Point 8: the API key stays out of every error, log line and stored body,
even when a gateway echoes it back or the HTTP library holds it."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from asyncvideo import Client, Job, JobState, ManualClock, RetryPolicy
from asyncvideo._transport._connection import Scrubber
from asyncvideo.errors import AsyncVideoError, JobFailedError

pytestmark = pytest.mark.anyio

KEY = "sk-live-0123456789abcdefSECRET"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything it drags along (causes and contexts)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def assert_no_key(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    for link in chain(exc):
        assert KEY not in str(link), link
        assert KEY not in repr(link), link
        assert not type(link).__module__.startswith("aiohttp"), link
    for record in caplog.records:
        assert KEY not in record.getMessage()


@pytest.fixture
async def echoing_gateway() -> AsyncIterator[str]:
    """A gateway that puts the caller's key into everything it says."""

    async def create(request: web.Request) -> web.StreamResponse:
        key = request.headers["Authorization"].removeprefix("Bearer ")
        return web.json_response(
            {"error": {"message": f"Incorrect API key provided: {key}", "code": "invalid"}},
            status=401,
        )

    async def status(request: web.Request) -> web.StreamResponse:
        key = request.headers["Authorization"].removeprefix("Bearer ")
        task = request.match_info["id"]
        if task == "html":
            page = f"<html><body>502 Bad Gateway for {key}</body></html>"
            return web.Response(status=502, text=page, content_type="text/html")
        return web.json_response(
            {"task_id": task, "status": "failed", "fail_reason": f"key {key} is over quota"}
        )

    async def content(request: web.Request) -> web.StreamResponse:
        key = request.headers["Authorization"].removeprefix("Bearer ")
        return web.json_response({"error": {"message": f"no video for {key}"}}, status=200)

    app = web.Application()
    app.router.add_post("/v1/video/generations", create)
    app.router.add_get("/v1/video/generations/{id}", status)
    app.router.add_get("/v1/videos/{id}/content", content)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def client_for(url: str, **options: object) -> Client:
    retry = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)
    return Client(api_key=KEY, base_url=url, clock=ManualClock(), retry_policy=retry, **options)  # type: ignore[arg-type]


async def test_point_8_an_echoed_key_is_scrubbed_from_errors_and_logs(
    echoing_gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with client_for(echoing_gateway) as client:
        with pytest.raises(AsyncVideoError) as refused:
            await client.submit(prompt="a cat", model="kling-v1")
        assert "Incorrect API key provided: [redacted]" in str(refused.value)
        assert_no_key(refused.value, caplog)

        with pytest.raises(AsyncVideoError) as bad_gateway:
            await client.get("html", model="kling-v1")
        assert_no_key(bad_gateway.value, caplog)

        job = await client.get("t1", model="kling-v1")
        assert job.state is JobState.FAILED
        assert KEY not in json.dumps(dict(job.raw))
        assert job.error is not None
        assert KEY not in job.error.message
        with pytest.raises(JobFailedError) as failed:
            job.raise_for_state()
        assert_no_key(failed.value, caplog)


async def test_point_8_an_error_page_instead_of_a_video_is_scrubbed(
    echoing_gateway: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    job = Job(id="v1", model="sora-2", provider="sora", state=JobState.SUCCEEDED)
    async with client_for(echoing_gateway) as client:
        with pytest.raises(AsyncVideoError) as caught:
            await client.download(job, tmp_path / "clip.mp4")
    assert "no video for [redacted]" in str(caught.value)
    assert_no_key(caught.value, caplog)


async def test_point_8_no_aiohttp_exception_rides_along(
    echoing_gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A user's session that raises for statuses itself: aiohttp's ClientResponseError
    # holds the request's headers, the Authorization header among them.
    async with (
        aiohttp.ClientSession(raise_for_status=True) as session,
        client_for(echoing_gateway, session=session) as client,
    ):
        with pytest.raises(AsyncVideoError) as caught:
            await client.get("html", model="kling-v1")
    assert_no_key(caught.value, caplog)


def test_the_scrubber_takes_the_key_out_of_text_and_bytes() -> None:
    scrub = Scrubber(KEY)
    assert scrub.text(f"bad key {KEY}!") == "bad key [redacted]!"
    assert scrub.body(f"bad key {KEY}!".encode()) == b"bad key [redacted]!"
    assert scrub.body(b"nothing secret") == b"nothing secret"


def test_a_scrubber_without_a_key_changes_nothing() -> None:
    scrub = Scrubber("")
    assert scrub.text("abc") == "abc"
    assert scrub.body(b"abc") == b"abc"


def test_a_secret_inside_another_leaves_nothing_of_the_longer_one() -> None:
    # "zz" sorts after "aazzbb-key": scrubbing it first would leave "aa" and "bb-key" behind.
    scrub = Scrubber("aazzbb-key", "zz")
    assert scrub.text("got aazzbb-key and zz") == "got [redacted] and [redacted]"
    assert scrub.body(b"got aazzbb-key") == b"got [redacted]"
    assert Scrubber("zz", "aazzbb-key").text("aazzbb-key") == "[redacted]"


async def test_a_gateway_echoing_the_webhook_secret_puts_it_in_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "whsec-echoed-0123456789"

    async def echo(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"error": {"message": f"callback signature {secret} rejected"}}, status=400
        )

    app = web.Application()
    app.router.add_get("/v1/video/generations/{id}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        caplog.set_level(logging.DEBUG)
        async with client_for(url, webhook_secret=secret) as client:
            with pytest.raises(AsyncVideoError) as refused:
                await client.get("t1", model="kling-v1")
        assert "callback signature [redacted] rejected" in str(refused.value)
        for link in chain(refused.value):
            assert secret not in str(link)
        assert all(secret not in record.getMessage() for record in caplog.records)
    finally:
        await runner.cleanup()
