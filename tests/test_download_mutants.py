"""Edges of the download path the other download tests left open (found by mutation
testing): how a resume is judged, what a stream reports, and the errors' details."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
from aiohttp import web

from asyncvideo import Client, Job, JobState, ManualClock, errors
from asyncvideo._download import safe_filename
from asyncvideo.testing import FakeGateway, make_mp4

from .conftest import ClientFactory
from .test_download import (
    VIDEO,
    StartCdn,
    cdn_client,
    cdn_job,
    cut_short,
    finished_job,
    start_cdn,
    video,
)
from .test_stream import stream_into

__all__ = ["start_cdn"]  # a fixture, imported for pytest

pytestmark = pytest.mark.anyio


def test_a_long_name_cut_inside_a_character_drops_its_broken_bytes() -> None:
    task_id = "视" * 100  # 300 UTF-8 bytes; the cut at 107 falls inside the 36th character
    digest = hashlib.sha256(task_id.encode()).hexdigest()[:12]
    assert safe_filename(task_id) == "视" * 35 + "_" + digest


async def test_a_task_id_no_url_can_carry_is_refused_before_any_request(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    job = attrs.evolve(await finished_job(client), id="..")
    sent = len(gateway.requests)
    with pytest.raises(errors.ValidationError) as caught:
        await client.download(job, tmp_path / "v.mp4")
    assert (str(caught.value), caught.value.field) == ("task id '..' cannot name a task", "task_id")
    assert len(gateway.requests) == sent


# -- how a resume is judged ------------------------------------------------------------------


async def test_a_body_cut_inside_its_first_header_is_asked_for_whole_again(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    # Five bytes were never handed on (no ftyp seen yet): there is nothing to resume.
    async def handler(request: web.Request) -> web.StreamResponse:
        if len(cdn.seen) == 1:
            return await cut_short(request, at=5, headers={"ETag": '"v1"'})
        return video(headers={"ETag": '"v1"'})

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        path = await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert path.read_bytes() == VIDEO
    assert [(h.get("Range"), h.get("If-Range")) for h in cdn.seen] == [(None, None)] * 2


@pytest.mark.parametrize(
    ("etag", "size"),
    [('"v2"', len(VIDEO)), ('"v1"', len(VIDEO) + 1_000)],
    ids=["new-validator-ignoring-if-range", "same-validator-new-length"],
)
async def test_a_range_of_another_version_restarts_the_download(
    start_cdn: StartCdn, tmp_path: Path, etag: str, size: int
) -> None:
    changed = make_mp4(size, "changed")

    async def handler(request: web.Request) -> web.StreamResponse:
        if len(cdn.seen) == 1:
            return await cut_short(request, at=12_000, headers={"ETag": '"v1"'})
        if "Range" in request.headers:  # the rest of the changed file, as if it continued
            span = f"bytes 12000-{size - 1}/{size}"
            headers = {"Content-Range": span, "ETag": etag}
            return video(changed[12_000:], status=206, headers=headers)
        return video(changed, headers={"ETag": etag})

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        path = await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert path.read_bytes() == changed
    assert [h.get("Range") for h in cdn.seen] == [None, "bytes=12000-", None]


# -- what a stream reports -------------------------------------------------------------------


async def test_a_stream_that_cannot_continue_names_its_task(
    start_cdn: StartCdn,
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await cut_short(request, at=12_000)  # no validator: nothing to resume against

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        with pytest.raises(errors.DownloadError) as caught:
            await stream_into(client, cdn_job(cdn, "t7"), [])
    assert caught.value.task_id == "t7"
    assert len(cdn.seen) == 1


async def test_a_link_that_lapses_after_bytes_were_streamed_says_why(
    make_client: ClientFactory, gateway: FakeGateway, start_cdn: StartCdn
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if "Range" not in request.headers:
            return await cut_short(request, at=12_000, headers={"ETag": '"v1"'})
        return web.json_response({"error": {"message": "link expired"}}, status=403)

    cdn = await start_cdn(handler)
    client = make_client()
    job = attrs.evolve(await finished_job(client), video_url=cdn.url + "v.mp4")
    received: list[bytes] = []
    with pytest.raises(errors.DownloadError) as caught:
        await stream_into(client, job, received)
    # The content endpoint has the same video, but 12000 bytes are already handed on.
    assert type(caught.value) is errors.DownloadError
    assert str(caught.value).startswith(
        "the video broke off after 12000 bytes and cannot be continued where it stopped: "
    )
    assert "link expired" in str(caught.value)
    assert isinstance(caught.value.__cause__, errors.PermissionDeniedError)
    assert b"".join(received) == VIDEO[:12_000]


@pytest.fixture
async def raw_server() -> AsyncIterator[str]:
    """A server whose answer has no Content-Type at all (aiohttp's always adds one)."""
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(VIDEO)}\r\n\r\n".encode()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head + VIDEO)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    server.close()
    await server.wait_closed()


async def test_a_stream_without_a_content_type_is_an_mp4(raw_server: str) -> None:
    job = Job(id="t1", model="kling-v1", provider="kling", state=JobState.SUCCEEDED)
    async with (
        Client(api_key="k", base_url=raw_server, clock=ManualClock()) as client,
        client.open_video(attrs.evolve(job, video_url=raw_server + "v.mp4")) as stream,
    ):
        assert (stream.content_type, stream.content_length) == ("video/mp4", len(VIDEO))
        assert b"".join([chunk async for chunk in stream]) == VIDEO


async def test_an_octet_stream_with_parameters_is_an_mp4(start_cdn: StartCdn) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.Response(body=VIDEO)
        response.headers["Content-Type"] = "application/octet-stream; charset=binary"
        return response

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client, client.open_video(cdn_job(cdn)) as stream:
        assert stream.content_type == "video/mp4"


async def test_a_stream_before_and_after_it_is_entered(
    client: Client, gateway: FakeGateway
) -> None:
    job = await finished_job(client)
    stream = client.open_video(job)
    assert (stream.content_length, stream.content_type) == (None, "video/mp4")
    assert repr(stream) == f"<VideoStream of {job.id!r} (? bytes)>"
    with pytest.raises(RuntimeError) as unentered:
        await anext(stream)
    assert str(unentered.value) == "use `async with client.open_video(job) as stream`"
    size = len(gateway.video_content(job.id))
    async with stream:
        assert repr(stream) == f"<VideoStream of {job.id!r} ({size} bytes)>"
        with pytest.raises(RuntimeError) as twice:
            await stream.__aenter__()
        assert str(twice.value) == "a VideoStream is entered once"


async def test_a_stream_asks_the_content_endpoint_for_its_variant(
    client: Client, gateway: FakeGateway
) -> None:
    job = await finished_job(client)
    async with client.open_video(job, variant="mp4") as stream:
        assert b"".join([chunk async for chunk in stream]) == gateway.video_content(job.id)
    content = [r for r in gateway.requests if r.path.endswith("/content")]
    assert content[-1].query == {"variant": "mp4"}
