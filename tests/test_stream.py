"""``Client.open_video``: the download path, chunk by chunk, with nothing on disk."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

import aiohttp
import anyio
import anyio.lowlevel
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from asyncvideo import Client, Job, JobState, Limits, ManualClock, RetryPolicy, VideoStream, errors
from asyncvideo._boxes import BoxWalk, mp4_boxes_end
from asyncvideo.testing import FakeGateway, make_mp4

from .conftest import ClientFactory
from .test_download import cut_range

pytestmark = pytest.mark.anyio

VIDEO = make_mp4(40_000, "stream")
Profile = Literal["seeds", "new-api", "litellm"]


async def finished_job(client: Client, model: str = "sora-2") -> Job:
    return await client.wait(await client.submit(prompt="x", model=model))


async def read_all(stream: VideoStream) -> list[bytes]:
    return [chunk async for chunk in stream]


async def stream_into(client: Client, job: Job, into: list[bytes]) -> None:
    """Open ``job``'s video and keep every chunk it yields, up to an error."""
    async with client.open_video(job) as stream:
        async for chunk in stream:
            into.append(chunk)  # noqa: PERF401 (kept as they come, for when one fails)


async def eventually(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await anyio.sleep(0.01)
    pytest.fail("not within 5 s")


# -- against the FakeGateway ---------------------------------------------------------------


@pytest.mark.parametrize("profile", ["seeds", "new-api", "litellm"])
@pytest.mark.parametrize("model", ["sora-2", "kling-v1"])
async def test_the_stream_is_the_gateways_video(
    make_client: ClientFactory, gateway: FakeGateway, profile: Profile, model: str
) -> None:
    # Sora from its content endpoint (no URL in the status), kling from its CDN URL.
    gateway.set_config(profile=profile, url_field="none" if model == "sora-2" else "auto")
    client = make_client()
    job = await finished_job(client, model)
    async with client.open_video(job) as stream:
        assert stream.job is job
        assert stream.content_type == "video/mp4"
        chunks = await read_all(stream)
    video = gateway.video_content(job.id)
    assert b"".join(chunks) == video
    assert stream.content_length == len(video)
    kinds = [r.kind for r in gateway.requests if r.kind in ("content", "cdn")]
    # new-api's content endpoint first says "not ready" for 3 s: waited out.
    assert set(kinds) == ({"content"} if model == "sora-2" else {"cdn"})
    assert gateway.stats.cdn_requests_with_auth == 0


async def test_a_drop_mid_stream_resumes_where_it_stopped(
    client: Client, gateway: FakeGateway
) -> None:
    job = await finished_job(client, "kling-v1")  # from the CDN, key-less
    gateway.set_config(drop_download_after=20_000, drop_downloads=1)
    async with client.open_video(job) as stream:
        chunks = await read_all(stream)
    assert b"".join(chunks) == gateway.video_content(job.id)
    ranged = [r for r in gateway.requests if "Range" in r.headers]
    assert [(r.kind, r.headers["Range"]) for r in ranged] == [("cdn", "bytes=20000-")]
    assert ranged[0].headers["If-Range"].startswith('"')
    assert gateway.stats.dropped_connections == 1
    assert gateway.stats.cdn_requests_with_auth == 0


async def test_the_key_never_reaches_the_cdn_through_a_redirect(
    client: Client, gateway: FakeGateway
) -> None:
    gateway.set_config(url_field="none", cdn_redirect=True)
    job = await finished_job(client)
    assert job.video_url is None
    async with client.open_video(job) as stream:  # content endpoint -> 302 -> CDN
        chunks = await read_all(stream)
    assert b"".join(chunks) == gateway.video_content(job.id)
    assert gateway.stats.requests["cdn"] == 1
    assert gateway.stats.cdn_requests_with_auth == 0


async def test_an_expired_video_raises_before_any_request_or_slot(
    make_client: ClientFactory, gateway: FakeGateway, clock: ManualClock
) -> None:
    client = make_client(limits=Limits(max_downloads=1))
    expired = await finished_job(client)
    clock.advance(2 * 86_400)
    async with client.open_video(await finished_job(client)):  # holds the only slot
        before = gateway.stats.total_requests
        with anyio.fail_after(5), pytest.raises(errors.VideoExpiredError):
            async with client.open_video(expired):
                pytest.fail("entered")  # pragma: no cover
        assert gateway.stats.total_requests == before


async def test_leaving_early_frees_the_slot_and_the_connection(
    make_client: ClientFactory, gateway: FakeGateway
) -> None:
    size = 16 * 1024 * 1024  # far more than loopback socket buffers hold
    gateway.set_config(video_bytes=size, chunk_size=64 * 1024)
    client = make_client(limits=Limits(max_downloads=1))
    job = await finished_job(client)
    async with client.open_video(job) as stream:
        assert stream.content_length == size
        first = await anext(stream)
    # The server finds the connection gone on its next write, and stops sending.
    await eventually(lambda: not gateway.stats.in_flight["content"])
    assert gateway.stats.downloads_completed == 0
    assert gateway.stats.bytes_served < size // 2
    with anyio.fail_after(5):  # with the slot still held this would wait for ever
        async with client.open_video(job) as stream:
            chunks = await read_all(stream)
    video = gateway.video_content(job.id)
    assert b"".join(chunks) == video
    assert first == video[: len(first)]


async def test_a_failing_reader_frees_the_slot(make_client: ClientFactory) -> None:
    client = make_client(limits=Limits(max_downloads=1))
    job = await finished_job(client)

    async def send_to_a_client_that_went_away() -> None:
        async with client.open_video(job) as stream:
            async for _ in stream:
                raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await send_to_a_client_that_went_away()
    with anyio.fail_after(5):
        async with client.open_video(job) as stream:
            assert len(b"".join(await read_all(stream))) == stream.content_length


async def test_a_stream_read_to_its_end_frees_the_slot_before_the_block_ends(
    make_client: ClientFactory,
) -> None:
    # A framework that iterates the stream but never leaves an `async with` of its own.
    client = make_client(limits=Limits(max_downloads=1))
    job = await finished_job(client)
    first = await client.open_video(job).__aenter__()
    await read_all(first)
    with anyio.fail_after(5):
        async with client.open_video(job) as second:
            await read_all(second)
    assert await read_all(first) == []  # ended, and stays ended
    await first.aclose()


async def test_a_stream_dropped_without_closing_frees_its_slot(make_client: ClientFactory) -> None:
    client = make_client(limits=Limits(max_downloads=1))
    job = await finished_job(client)
    stream = client.open_video(job)
    await stream.__aenter__()
    await anext(stream)
    del stream  # what Starlette does after a client disconnect: no aclose, no __aexit__
    with anyio.fail_after(5):
        async with client.open_video(job) as again:
            assert len(b"".join(await read_all(again))) == again.content_length


async def test_an_aiohttp_handler_passes_the_video_on(
    make_client: ClientFactory, gateway: FakeGateway
) -> None:
    client = make_client(limits=Limits(max_downloads=1))
    job = await finished_job(client, "kling-v1")

    async def clip(request: web.Request) -> web.StreamResponse:
        async with client.open_video(job) as stream:
            response = web.StreamResponse()
            response.content_type = stream.content_type
            response.content_length = stream.content_length
            await response.prepare(request)
            async for chunk in stream:
                await response.write(chunk)
            await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/clip", clip)
    video = gateway.video_content(job.id)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        for _ in range(2):  # the second waits for the only slot, which the first gave back
            async with session.get(server.make_url("/clip")) as answer:
                assert answer.headers["Content-Type"] == "video/mp4"
                assert answer.content_length == len(video)
                assert await answer.read() == video
    assert gateway.stats.cdn_requests_with_auth == 0


async def test_an_unfinished_job_or_an_unentered_stream_is_refused(client: Client) -> None:
    job = await client.submit(prompt="x")
    with pytest.raises(errors.DownloadError, match="wait"):
        async with client.open_video(job):
            pytest.fail("entered")  # pragma: no cover
    stream = client.open_video(job)
    with pytest.raises(RuntimeError, match="async with"):
        await anext(stream)


async def test_a_gzip_body_has_no_length_and_streams_decoded(
    client: Client, gateway: FakeGateway
) -> None:
    gateway.set_config(content_encoding="gzip")
    job = await finished_job(client)
    async with client.open_video(job) as stream:
        assert stream.content_length is None  # the encoded length says nothing of the video
        chunks = await read_all(stream)
    assert b"".join(chunks) == gateway.video_content(job.id)


# -- one fault at a time -------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def cdn() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[str, list[web.Request]]]]]:
    servers: list[TestServer] = []

    async def start(handler: Handler) -> tuple[str, list[web.Request]]:
        seen: list[web.Request] = []

        async def serve(request: web.Request) -> web.StreamResponse:
            seen.append(request)
            return await handler(request)

        app = web.Application()
        app.router.add_get("/{name:.*}", serve)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/")), seen

    yield start
    for server in servers:
        await server.close()


StartCdn = Callable[[Handler], Awaitable[tuple[str, list[web.Request]]]]


def client_on(url: str, clock: ManualClock | None = None, min_rate: float = 1024.0) -> Client:
    return Client(
        api_key="sk-stream-test",
        base_url=url,
        clock=clock or ManualClock(),
        retry_policy=RetryPolicy(
            base_delay=0.5, max_delay=4.0, min_download_rate=min_rate, download_rate_window=1.0
        ),
    )


def cdn_job(url: str) -> Job:
    return Job(
        id="t1",
        model="kling-v1",
        provider="kling",
        state=JobState.SUCCEEDED,
        video_url=url + "v.mp4",
    )


async def cut_short(request: web.Request, at: int, headers: dict[str, str]) -> web.StreamResponse:
    """Announce the whole video, send ``at`` bytes of it, then drop the connection."""
    response = web.StreamResponse(headers={"Content-Length": str(len(VIDEO)), **headers})
    response.content_type = "video/mp4"
    await response.prepare(request)
    await response.write(VIDEO[:at])
    assert request.transport is not None
    request.transport.close()
    return response


@pytest.mark.parametrize(
    ("content_type", "body", "error"),
    [
        ("application/json", b'{"error": {"message": "signature expired"}}', errors.DownloadError),
        ("text/html", b"<html><body>Access denied</body></html>", errors.DownloadError),
        (
            "video/mp4",
            b'{"error": {"message": "a JSON body that says it is a video"}}' * 9,
            errors.IntegrityError,
        ),
        ("video/mp4", b"\0\0\0\x18fty", errors.IntegrityError),
    ],
    ids=["json", "html", "json-as-video", "too-short"],
)
async def test_an_error_body_is_never_streamed(
    cdn: StartCdn, content_type: str, body: bytes, error: type[errors.DownloadError]
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, headers={"Content-Type": content_type})

    url, seen = await cdn(handler)
    yielded: list[bytes] = []
    async with client_on(url) as client:
        with pytest.raises(error) as caught:
            await stream_into(client, cdn_job(url), yielded)
    assert type(caught.value) is error
    assert caught.value.task_id == "t1"
    assert yielded == []
    assert len(seen) == 1  # the same bytes would come again: not retried


async def test_a_drop_where_the_server_cannot_resume_is_a_download_error(cdn: StartCdn) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await cut_short(request, 12_000, headers={})  # no ETag: nothing to resume against

    url, seen = await cdn(handler)
    yielded: list[bytes] = []
    async with client_on(url) as client:
        with pytest.raises(errors.DownloadError, match="after 12000 bytes") as caught:
            await stream_into(client, cdn_job(url), yielded)
    assert type(caught.value) is errors.DownloadError
    assert isinstance(caught.value.__cause__, errors.TransportError)
    assert b"".join(yielded) == VIDEO[:12_000]  # what was handed on is right, and ends there
    assert len(seen) == 1


async def test_a_resume_answered_with_another_version_is_a_download_error(cdn: StartCdn) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if "Range" not in request.headers:
            return await cut_short(request, 12_000, headers={"ETag": '"v1"'})
        # If-Range named v1; the file changed, so the whole of v2 comes back.
        return web.Response(body=VIDEO, content_type="video/mp4", headers={"ETag": '"v2"'})

    url, seen = await cdn(handler)
    yielded: list[bytes] = []
    async with client_on(url) as client:
        with pytest.raises(errors.DownloadError, match="from byte 0"):
            await stream_into(client, cdn_job(url), yielded)
    assert b"".join(yielded) == VIDEO[:12_000]
    assert [r.headers.get("If-Range") for r in seen] == [None, '"v1"']


async def test_a_body_cut_inside_a_box_resumes_even_without_a_length(cdn: StartCdn) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        start = int(request.headers.get("Range", "bytes=0-")[6:].rstrip("-"))
        headers = {"ETag": '"v1"'}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(VIDEO) - 1}/*"
        response = web.StreamResponse(status=206 if start else 200, headers=headers)
        response.content_type = "video/mp4"
        response.enable_chunked_encoding()  # no length: only the boxes tell it is short
        await response.prepare(request)
        await response.write(VIDEO[start : None if start else 25_000])
        await response.write_eof()
        return response

    url, seen = await cdn(handler)
    async with client_on(url) as client, client.open_video(cdn_job(url)) as stream:
        assert stream.content_length is None
        chunks = await read_all(stream)
    assert b"".join(chunks) == VIDEO
    assert [r.headers.get("Range") for r in seen] == [None, "bytes=25000-"]


async def test_a_stream_cut_every_10_kb_arrives_whole(cdn: StartCdn) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await cut_range(request, body=VIDEO, at_most=10_000)

    url, seen = await cdn(handler)
    async with client_on(url) as client, client.open_video(cdn_job(url)) as stream:
        assert stream.content_length == len(VIDEO)
        chunks = await read_all(stream)
    assert b"".join(chunks) == VIDEO
    # Each cut got further, so none counted against RetryPolicy.max_attempts (4).
    assert [r.headers.get("Range") for r in seen] == [
        None,
        "bytes=10000-",
        "bytes=20000-",
        "bytes=30000-",
    ]


async def test_a_stream_that_gets_no_further_gives_up_after_max_attempts(cdn: StartCdn) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        # 12,000 bytes, then every resume is answered and cut before its first byte.
        at_most = 0 if "Range" in request.headers else 12_000
        return await cut_range(request, body=VIDEO, at_most=at_most)

    url, seen = await cdn(handler)
    yielded: list[bytes] = []
    async with client_on(url) as client:
        with pytest.raises(errors.DownloadError, match=r"^download failed after 4 attempts"):
            await stream_into(client, cdn_job(url), yielded)
    assert b"".join(yielded) == VIDEO[:12_000]
    assert len(seen) == 5  # the first made progress; four got nowhere


@pytest.mark.parametrize(
    ("sent", "reported"),
    [
        ("", "video/mp4"),
        ("application/octet-stream", "video/mp4"),
        ("video/quicktime", "video/quicktime"),
    ],
)
async def test_the_content_type_is_the_servers_unless_it_says_nothing(
    cdn: StartCdn, sent: str, reported: str
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.Response(body=VIDEO)
        response.headers["Content-Type"] = sent
        return response

    url, _ = await cdn(handler)
    async with client_on(url) as client, client.open_video(cdn_job(url)) as stream:
        assert b"".join(await read_all(stream)) == VIDEO
    assert stream.content_type == reported


async def test_a_lapsed_cdn_link_falls_back_to_the_content_endpoint(
    make_client: ClientFactory, gateway: FakeGateway, cdn: StartCdn
) -> None:
    async def gone(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"message": "link expired"}}, status=403)

    url, seen = await cdn(gone)
    client = make_client()
    job = await finished_job(client)
    lapsed = attrs.evolve(job, video_url=url + "v.mp4")
    async with client.open_video(lapsed) as stream:
        chunks = await read_all(stream)
    assert b"".join(chunks) == gateway.video_content(job.id)
    assert len(seen) == 1
    assert "Authorization" not in seen[0].headers


async def test_a_slow_reader_is_not_a_slow_server(cdn: StartCdn) -> None:
    # The minimum rate times the server, not the reader: a web client on a slow
    # link may hold each chunk for minutes.
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(VIDEO))})
        response.content_type = "video/mp4"
        await response.prepare(request)
        for start in range(0, len(VIDEO), 4096):
            await response.write(VIDEO[start : start + 4096])
            for _ in range(20):  # let the client read each piece on its own
                await anyio.lowlevel.checkpoint()
        return response

    url, seen = await cdn(handler)
    clock = ManualClock()
    chunks: list[bytes] = []
    async with (
        client_on(url, clock, min_rate=1e6) as client,
        client.open_video(cdn_job(url)) as stream,
    ):
        async for chunk in stream:
            chunks.append(chunk)
            clock.advance(60.0)
    assert b"".join(chunks) == VIDEO
    assert len(chunks) > 2
    assert len(seen) == 1


# -- the box walk a stream is checked by -----------------------------------------------------


@given(st.data())
def test_walking_boxes_as_they_stream_agrees_with_reading_them_from_disk(
    data: st.DataObject,
) -> None:
    video = VIDEO if data.draw(st.booleans()) else make_mp4(3_000, "small")
    size = data.draw(st.integers(min_value=0, max_value=len(video)))
    body = video[:size]
    cuts = sorted(data.draw(st.lists(st.integers(0, size), max_size=12)))
    walk = BoxWalk()
    for start, end in zip([0, *cuts], [*cuts, size], strict=True):
        walk.feed(body[start:end])
    assert walk.seen == size
    assert walk.end() == mp4_boxes_end(lambda n, at: body[at : at + n], size)


def test_a_64_bit_box_size_split_across_chunks() -> None:
    big = (1).to_bytes(4, "big") + b"mdat" + (24).to_bytes(8, "big") + b"x" * 8
    body = b"\0\0\0\x08ftyp" + big + b"\0\0\0\x08moov"
    for split in range(len(body)):
        walk = BoxWalk()
        walk.feed(body[:split])
        walk.feed(body[split:])
        assert (walk.end(), walk.kinds) == (len(body), {b"ftyp", b"mdat", b"moov"})
    with pytest.raises(errors.IntegrityError, match="size of 3"):
        BoxWalk().feed(b"\0\0\0\x08ftyp\0\0\0\x03moov")
