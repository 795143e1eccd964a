"""Answers no honest gateway sends, scripted one fault at a time on loopback.

A raw HTTP/1.1 server (not aiohttp's, which would frame bodies correctly) lets a
test cut a body where it likes, lie about lengths and ranges, or say "not
ready" from a CDN. Each test checks what a user would: the bytes on disk, the
requests the server saw, the error type.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import attrs
import pytest

from asyncvideo import Client, Job, JobState, ManualClock, RetryPolicy
from asyncvideo.errors import (
    CreateOutcomeUnknown,
    DownloadError,
    InvalidRequestError,
    ProtocolError,
)
from asyncvideo.providers._parse import parse_task
from asyncvideo.testing import make_mp4

pytestmark = pytest.mark.anyio

KEY = "sk-hostile-test"
VIDEO = make_mp4(4096, "hostile")


@attrs.define
class Seen:
    method: str
    path: str
    headers: dict[str, str]


#: What the server writes for one request: raw bytes, then ``None`` to close the connection.
Answer = list[bytes | None]
Script = Callable[[Seen], Answer]


@attrs.define
class RawServer:
    script: Script
    url: str = ""
    seen: list[Seen] = attrs.field(factory=list)


def answer(
    status: int,
    body: bytes = b"",
    *,
    content_type: str = "video/mp4",
    length: int | None = -1,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A raw response head and body; ``length=None`` sends no Content-Length (close-delimited)."""
    lines = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}"]
    if length is not None:
        lines.append(f"Content-Length: {len(body) if length == -1 else length}")
    else:
        lines.append("Connection: close")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def json_answer(status: int, payload: object) -> bytes:
    return answer(status, json.dumps(payload).encode(), content_type="application/json")


async def _serve(
    server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while line := await reader.readline():
            method, path, _ = line.decode().split(" ", 2)
            headers: dict[str, str] = {}
            while (header := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = header.decode().partition(":")
                headers[name.strip().title()] = value.strip()
            length = int(headers.get("Content-Length", "0"))
            if length:
                await reader.readexactly(length)
            seen = Seen(method, path, headers)
            server.seen.append(seen)
            for part in server.script(seen):
                if part is None:
                    await writer.drain()
                    return
                writer.write(part)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


StartServer = Callable[[Script], Awaitable[RawServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Starts raw servers on loopback; all are closed when the test ends."""
    listening: list[asyncio.Server] = []

    async def start(script: Script) -> RawServer:
        server = RawServer(script)
        socket_server = await asyncio.start_server(
            lambda reader, writer: _serve(server, reader, writer), "127.0.0.1", 0
        )
        listening.append(socket_server)
        server.url = f"http://127.0.0.1:{socket_server.sockets[0].getsockname()[1]}"
        return server

    yield start
    for socket_server in listening:
        socket_server.close()
        await socket_server.wait_closed()


def client_for(server: RawServer, clock: ManualClock) -> Client:
    retry = RetryPolicy(base_delay=0.5, max_delay=4.0)
    return Client(api_key=KEY, base_url=server.url, clock=clock, retry_policy=retry)


def succeeded(task_id: str = "video_1", url: str | None = None) -> Job:
    return Job(
        id=task_id,
        model="sora-2",
        provider="sora",
        state=JobState.SUCCEEDED,
        video_url=url,
    )


# -- downloads --------------------------------------------------------------------------


async def test_a_gzip_body_cut_short_is_never_saved_and_is_fetched_again(
    start_server: StartServer, tmp_path: Path
) -> None:
    encoded = gzip.compress(VIDEO)
    cut = encoded[: len(encoded) * 6 // 10]
    bodies = iter([cut, encoded])

    def script(seen: Seen) -> Answer:
        # Framed as complete: Content-Length matches what is sent.
        return [answer(200, next(bodies), headers={"Content-Encoding": "gzip"})]

    server = await start_server(script)
    async with client_for(server, ManualClock()) as client:
        path = await client.download(succeeded(), tmp_path / "clip.mp4")
    assert path.read_bytes() == VIDEO
    assert len(server.seen) == 2
    assert "Range" not in server.seen[1].headers  # no range into an encoded body


async def test_a_body_that_is_always_cut_short_fails_typed_and_leaves_nothing(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server(lambda seen: [answer(200, VIDEO[:3000], length=None), None])
    async with client_for(server, ManualClock()) as client:
        with pytest.raises(DownloadError, match="inside an MP4 box"):
            await client.download(succeeded(), tmp_path / "clip.mp4")
    assert len(server.seen) == 4  # RetryPolicy.max_attempts
    assert list(tmp_path.iterdir()) == []


async def test_a_close_delimited_body_cut_short_resumes_where_it_stopped(
    start_server: StartServer, tmp_path: Path
) -> None:
    def script(seen: Seen) -> Answer:
        if "Range" not in seen.headers:
            return [answer(200, VIDEO[:3000], length=None, headers={"ETag": '"v1"'}), None]
        assert seen.headers["Range"] == "bytes=3000-"
        rest = VIDEO[3000:]
        span = f"bytes 3000-{len(VIDEO) - 1}/{len(VIDEO)}"
        return [answer(206, rest, headers={"ETag": '"v1"', "Content-Range": span})]

    server = await start_server(script)
    async with client_for(server, ManualClock()) as client:
        path = await client.download(succeeded(), tmp_path / "clip.mp4")
    assert path.read_bytes() == VIDEO
    assert len(server.seen) == 2


async def test_a_range_that_does_not_continue_the_file_is_not_appended(
    start_server: StartServer, tmp_path: Path
) -> None:
    def script(seen: Seen) -> Answer:
        if len(server.seen) == 1:
            return [answer(200, VIDEO[:2000], length=len(VIDEO), headers={"ETag": '"v1"'}), None]
        if "Range" in seen.headers:
            # Asked for bytes=2000-, answers from the start: must not land at 2000.
            span = f"bytes 0-{len(VIDEO) - 1}/{len(VIDEO)}"
            return [answer(206, VIDEO[:1000] + VIDEO[1000:], headers={"Content-Range": span})]
        return [answer(200, VIDEO)]

    server = await start_server(script)
    async with client_for(server, ManualClock()) as client:
        path = await client.download(succeeded(), tmp_path / "clip.mp4")
    assert path.read_bytes() == VIDEO


async def test_a_partial_answer_nobody_asked_for_restarts_the_file(
    start_server: StartServer, tmp_path: Path
) -> None:
    encoded = gzip.compress(VIDEO)
    gz = {"Content-Encoding": "gzip"}

    def script(seen: Seen) -> Answer:
        if len(server.seen) == 1:
            return [answer(200, encoded[:500], length=len(encoded), headers=gz), None]
        if len(server.seen) == 2:  # no Range was sent, yet a 206
            span = f"bytes 0-{len(encoded) - 1}/{len(encoded)}"
            return [answer(206, encoded, headers={**gz, "Content-Range": span})]
        return [answer(200, encoded, headers=gz)]

    server = await start_server(script)
    async with client_for(server, ManualClock()) as client:
        path = await client.download(succeeded(), tmp_path / "clip.mp4")
    assert path.read_bytes() == VIDEO
    assert len(server.seen) == 3


async def test_not_ready_from_a_cdn_falls_back_to_the_content_endpoint_at_once(
    start_server: StartServer, tmp_path: Path
) -> None:
    cdn = await start_server(lambda seen: [json_answer(404, {"message": "video not ready yet"})])
    gateway = await start_server(lambda seen: [answer(200, VIDEO)])
    clock = ManualClock()
    async with client_for(gateway, clock) as client:
        job = succeeded(url=f"{cdn.url}/files/v.mp4")
        path = await client.download(job, tmp_path / "clip.mp4")
    assert path.read_bytes() == VIDEO
    assert (len(cdn.seen), len(gateway.seen)) == (1, 1)
    assert clock.monotonic() == 0  # no not-ready wait


async def test_a_final_error_that_mentions_processing_is_not_waited_on(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server(
        lambda seen: [json_answer(400, {"error": {"message": "Error processing request"}})],
    )
    clock = ManualClock()
    async with client_for(server, clock) as client:
        with pytest.raises(InvalidRequestError):
            await client.download(succeeded(), tmp_path / "clip.mp4")
    assert len(server.seen) == 1
    assert clock.monotonic() == 0


# -- answers that name no task ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        answer(200, b"<html><body>OK</body></html>", content_type="text/html"),
        json_answer(200, {"code": "success", "data": "task_abc"}),
        json_answer(200, {"status": "ok"}),
        answer(200, b"[" * 100_000 + b"]" * 100_000, content_type="application/json"),
    ],
)
async def test_a_create_answered_without_a_readable_task_carries_the_key(
    start_server: StartServer, body: bytes
) -> None:
    server = await start_server(lambda seen: [body])
    async with client_for(server, ManualClock()) as client:
        with pytest.raises(CreateOutcomeUnknown) as caught:
            await client.submit(prompt="a cat", model="sora-2", idempotency_key="key-123")
    assert caught.value.idempotency_key == "key-123"
    assert len(server.seen) == 1  # and it was not sent again


async def test_a_status_body_nested_too_deep_is_a_protocol_error(
    start_server: StartServer,
) -> None:
    deep = answer(200, b"[" * 100_000 + b"]" * 100_000, content_type="application/json")
    server = await start_server(lambda seen: [deep])
    async with client_for(server, ManualClock()) as client:
        with pytest.raises(ProtocolError):
            await client.refresh(succeeded())


def test_an_envelopes_own_status_is_not_the_tasks() -> None:
    for outer in ({"status": "success"}, {"code": "success", "status": 200}, {"code": 0}):
        body = {**outer, "data": {"task_id": "t1", "status": "IN_PROGRESS", "progress": "30%"}}
        job = parse_task(body, model="kling-v1", provider="kling")
        assert (job.id, job.state, job.progress) == ("t1", JobState.RUNNING, 30)
    twice = {"code": "success", "data": {"code": 0, "data": {"task_id": "t2", "status": "SUCCESS"}}}
    assert parse_task(twice, model="m", provider="kling").state is JobState.SUCCEEDED
    # A task body that keeps its upstream's answer under `data` is not an envelope.
    kept = {
        "task_id": "t3",
        "status": "IN_PROGRESS",
        "data": {"task_id": "up", "status": "succeed"},
    }
    assert parse_task(kept, model="m", provider="kling").state is JobState.RUNNING
