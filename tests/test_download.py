"""Downloads: resumable, verified, key-safe, and never a half file under the final name."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gzip
import random
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.lowlevel
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from asyncvideo import (
    AiohttpTransport,
    Client,
    Endpoints,
    GatewayProfile,
    HTTPRequest,
    HTTPResponse,
    Job,
    JobState,
    ManualClock,
    RetryPolicy,
    SQLiteJournal,
    Timeouts,
    VideoRequest,
    errors,
)
from asyncvideo._download import (
    _RateFloor,
    is_complete_mp4,
    looks_like_mp4,
    mp4_boxes_end,
    safe_filename,
)
from asyncvideo.testing import FakeGateway, make_mp4

from .conftest import ClientFactory

pytestmark = pytest.mark.anyio


async def finished_job(client: Client, prompt: str = "x", model: str = "sora-2") -> Job:
    return await client.wait(await client.submit(prompt=prompt, model=model))


async def test_resumes_after_a_dropped_connection(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    job = await finished_job(client)
    gateway.set_config(drop_download_after=20_000, drop_downloads=1)
    path = await client.download(job, tmp_path / "v.mp4")
    assert path.read_bytes() == gateway.video_content(job.id)
    ranged = [r for r in gateway.requests if "Range" in r.headers]
    assert ranged
    assert ranged[-1].headers["Range"] == "bytes=20000-"
    assert gateway.stats.dropped_connections == 1


async def test_key_never_reaches_the_cdn(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    job = await finished_job(client)
    assert job.video_url is not None
    assert job.video_url.startswith(gateway.cdn_url)
    await client.download(job, tmp_path / "a.mp4")
    gateway.set_config(url_field="none", cdn_redirect=True)
    job2 = await finished_job(client)
    assert job2.video_url is None
    path = await client.download(job2, tmp_path / "b.mp4")  # content endpoint -> 302 -> CDN
    assert path.read_bytes() == gateway.video_content(job2.id)
    assert gateway.stats.requests["cdn"] == 2
    assert gateway.stats.cdn_requests_with_auth == 0


async def test_expired_video_raises_before_any_request(
    client: Client, gateway: FakeGateway, clock: ManualClock, tmp_path: Path
) -> None:
    job = await finished_job(client)
    assert job.expires_at is not None
    clock.advance(2 * 86_400)
    before = gateway.stats.total_requests
    with pytest.raises(errors.VideoExpiredError):
        await client.download(job, tmp_path / "late.mp4")
    assert gateway.stats.total_requests == before
    assert not (tmp_path / "late.mp4").exists()


async def test_unfinished_or_failed_jobs_are_refused(client: Client, tmp_path: Path) -> None:
    job = await client.submit(prompt="x")
    with pytest.raises(errors.DownloadError, match="wait"):
        await client.download(job, tmp_path / "early.mp4")
    failed = await finished_job(client, prompt="[fail] x")
    with pytest.raises(errors.JobFailedError):
        await client.download(failed, tmp_path / "failed.mp4")


async def test_a_job_with_no_video_to_fetch_says_why_before_any_request(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return video()

    cdn = await start_cdn(handler)
    deadline = datetime(2030, 1, 1, tzinfo=UTC)
    clock = ManualClock(start=deadline.timestamp())  # the very second the link expires
    done = cdn_job(cdn)
    jobs_and_errors = [
        (
            attrs.evolve(done, expires_at=deadline),
            errors.VideoExpiredError,
            "the video of job t1 expired at 2030-01-01T00:00:00+00:00",
        ),
        (
            attrs.evolve(done, state=JobState.RUNNING),
            errors.DownloadError,
            "job t1 is still running; wait for it first",
        ),
        (attrs.evolve(done, video_url=None), errors.DownloadError, "job t1 has no video URL"),
    ]
    async with cdn_client(cdn, clock) as client:
        for job, error, message in jobs_and_errors:
            with pytest.raises(error) as caught:
                await client.download(job, tmp_path / "v.mp4")
            assert type(caught.value) is error
            assert (str(caught.value), caught.value.task_id) == (message, "t1")
    assert cdn.seen == []
    assert list(tmp_path.iterdir()) == []


async def test_download_into_a_folder_uses_the_task_id(client: Client, tmp_path: Path) -> None:
    job = await finished_job(client)
    path = await client.download(job, tmp_path)
    assert path.parent == tmp_path
    assert path.suffix == ".mp4"
    assert job.id.replace("-", "_") in path.name or job.id in path.name


@pytest.fixture
async def bad_cdn() -> AsyncIterator[TestServer]:
    """A CDN that answers 200 with the wrong things."""

    async def json_error(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "signature expired"}})

    async def not_video(request: web.Request) -> web.Response:
        return web.Response(body=b"\0" * 4096, content_type="video/mp4")

    async def short(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100000"})
        response.content_type = "video/mp4"
        await response.prepare(request)
        await response.write(b"\0\0\0\x18ftypisom" + b"\0" * 500)
        assert request.transport is not None
        request.transport.close()  # dies short of Content-Length, every time
        return response

    app = web.Application()
    app.router.add_get("/json.mp4", json_error)
    app.router.add_get("/zeros.mp4", not_video)
    app.router.add_get("/short.mp4", short)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("json.mp4", errors.DownloadError),
        ("zeros.mp4", errors.IntegrityError),
        ("short.mp4", errors.DownloadError),
    ],
)
async def test_bad_bodies_are_never_saved(
    make_client: ClientFactory, bad_cdn: TestServer, tmp_path: Path, name: str, error: type
) -> None:
    client = make_client()
    job = Job(
        id="t1",
        model="kling-v1",
        provider="kling",
        state=JobState.SUCCEEDED,
        video_url=str(bad_cdn.make_url(f"/{name}")),
    )
    with pytest.raises(error):
        await client.download(job, tmp_path / "out.mp4")
    assert list(tmp_path.iterdir()) == []


# -- edges found by mutation testing (mutmut on _download.py) ------------------------------

VIDEO = make_mp4(30_000, "mutation")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@attrs.define
class Cdn:
    """A loopback server that answers every GET with the test's handler."""

    url: str
    handler: Handler
    #: the headers of every request, in order
    seen: list[CIMultiDictProxy[str]] = attrs.field(factory=list)
    #: the names of the files in the test's folder when each request arrived
    files: list[list[str]] = attrs.field(factory=list)


StartCdn = Callable[[Handler], Awaitable[Cdn]]


@pytest.fixture
async def start_cdn(tmp_path: Path) -> AsyncIterator[StartCdn]:
    servers: list[TestServer] = []

    async def start(handler: Handler) -> Cdn:
        async def serve(request: web.Request) -> web.StreamResponse:
            cdn.seen.append(request.headers)
            cdn.files.append(sorted(path.name for path in tmp_path.iterdir()))
            return await cdn.handler(request)

        app = web.Application()
        app.router.add_get("/{name:.*}", serve)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        cdn = Cdn(url=str(server.make_url("/")), handler=handler)
        return cdn

    yield start
    for server in servers:
        await server.close()


@attrs.frozen(kw_only=True)
class RecordedBackoff(RetryPolicy):
    """Waits exactly ``base_delay * 2**attempt`` (or the Retry-After) and records each call."""

    calls: list[tuple[int, float | None]] = attrs.field(factory=list, eq=False)

    def backoff(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        assert isinstance(rng, random.Random)  # the client's seeded jitter reaches the policy
        self.calls.append((attempt, retry_after))
        return retry_after if retry_after is not None else self.base_delay * 2**attempt


def cdn_client(cdn: Cdn, clock: ManualClock, policy: RecordedBackoff | None = None) -> Client:
    """A client whose gateway is the CDN itself (its not-ready answers are waited on)."""
    policy = policy or RecordedBackoff()
    return Client(api_key="sk-test", base_url=cdn.url, clock=clock, retry_policy=policy)


def calls_of(client: Client) -> list[tuple[int, float | None]]:
    assert isinstance(client.retry_policy, RecordedBackoff)
    return client.retry_policy.calls


def cdn_job(cdn: Cdn, task_id: str = "t1") -> Job:
    # Kling jobs have no content endpoint on the default gateway: the URL is the only source.
    return Job(
        id=task_id,
        model="kling-v1",
        provider="kling",
        state=JobState.SUCCEEDED,
        video_url=cdn.url + "v.mp4",
    )


def video(
    body: bytes = VIDEO, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(body=body, status=status, content_type="video/mp4", headers=headers)


def json_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"message": message}}, status=status, headers=headers)


async def cut_short(
    request: web.Request,
    *,
    at: int,
    body: bytes = VIDEO,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Announce all of ``body``, send ``at`` bytes of it, then drop the connection."""
    response = web.StreamResponse(headers={"Content-Length": str(len(body)), **(headers or {})})
    response.content_type = "video/mp4"
    await response.prepare(request)
    await response.write(body[:at])
    assert request.transport is not None
    request.transport.close()
    return response


async def cut_range(request: web.Request, *, body: bytes, at_most: int) -> web.StreamResponse:
    """Announce ``body`` from where the Range says, send ``at_most`` bytes of it, then drop
    the connection: a CDN that cuts every answer short, and resumes."""
    start = int(request.headers.get("Range", "bytes=0-").removeprefix("bytes=").rstrip("-"))
    headers = {"ETag": '"v1"', "Content-Length": str(len(body) - start)}
    if start:
        headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
    response = web.StreamResponse(status=206 if start else 200, headers=headers)
    response.content_type = "video/mp4"
    await response.prepare(request)
    await response.write(body[start : start + at_most])
    if start + at_most < len(body):
        assert request.transport is not None
        request.transport.close()
    return response


def rest_of_video(start: int, *, total: str = str(len(VIDEO)), **headers: str) -> web.Response:
    span = f"bytes {start}-{len(VIDEO) - 1}/{total}"
    return video(VIDEO[start:], status=206, headers={"Content-Range": span, **headers})


def test_task_ids_become_safe_file_names() -> None:
    assert safe_filename("../../etc/pass wd") == "______etc_pass_wd"
    assert safe_filename("task-Q2_x9") == "task-Q2_x9"
    cut = safe_filename("a" * 200)  # cut to 120 bytes, ending in a hash of the whole id
    assert len(cut) == 120
    assert cut.startswith("a" * 107 + "_")
    assert cut != safe_filename("a" * 201)
    assert safe_filename("") == "video"
    assert safe_filename("a" * 120) == "a" * 120  # exactly the budget: kept whole
    assert len(safe_filename("a" * 121)) == 120
    # JSON can carry a lone surrogate ("\ud800"); hashing it must not raise.
    lone = safe_filename("\ud800" * 130)
    assert lone.startswith("_" * 107 + "_")
    assert lone != safe_filename("\udc00" * 130)
    assert looks_like_mp4(VIDEO)
    assert not looks_like_mp4(VIDEO[:7])


async def test_a_hostile_task_id_stays_in_the_folder(start_cdn: StartCdn, tmp_path: Path) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return video()

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        path = await client.download(cdn_job(cdn, "../up-one/x"), tmp_path)
    assert path == tmp_path / "___up-one_x.mp4"
    assert path.read_bytes() == VIDEO


async def test_missing_folders_are_created(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    job = await finished_job(client)
    path = await client.download(job, tmp_path / "new" / "deeper" / "v.mp4")
    assert path.read_bytes() == gateway.video_content(job.id)


async def test_a_variant_is_asked_of_the_content_endpoint(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    job = await finished_job(client)
    path = await client.download(job, tmp_path / "v.mp4", variant="mp4")
    assert path.read_bytes() == gateway.video_content(job.id)
    content = [r for r in gateway.requests if r.path.endswith("/content")]
    assert content[-1].query == {"variant": "mp4"}
    with pytest.raises(errors.InvalidRequestError, match="thumbnail"):
        await client.download(job, tmp_path / "t.jpg", variant="thumbnail")


async def test_a_variant_keeps_the_query_the_content_endpoint_already_has(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    asked: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        asked.append(request.raw_path)
        return video()

    cdn = await start_cdn(handler)
    paths = Endpoints(create="/v1/videos", status="/v1/videos/{id}", content="/c/{id}?f=raw&sig=")
    profile = GatewayProfile(name="custom", openai=paths, generations=paths)
    job = Job(id="a/b", model="sora-2", provider="sora", state=JobState.SUCCEEDED)
    async with Client(api_key="sk-test", base_url=cdn.url, gateway=profile) as client:
        await client.download(job, tmp_path / "v.mp4", variant="mp4")
    # The id is one path segment, its slash escaped; a blank value is the gateway's, kept.
    assert asked == ["/c/a%2Fb?f=raw&sig=&variant=mp4"]


@pytest.mark.parametrize("status", [403, 404, 410, 400])
async def test_a_refused_video_url_falls_back_to_the_content_endpoint(
    start_cdn: StartCdn, tmp_path: Path, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/expired.mp4":  # busy at first (retried), then refused
            return json_error(429 if len(cdn.seen) == 1 else status, "link expired")
        return video()

    cdn = await start_cdn(handler)
    # A task id from the gateway, with a control character that must not reach the log.
    job = Job(
        id="t1\x1b[2Jforged",
        model="sora-2",
        provider="sora",
        state=JobState.SUCCEEDED,
        video_url=cdn.url + "expired.mp4",
    )
    async with cdn_client(cdn, ManualClock()) as client:
        with caplog.at_level("INFO", logger="asyncvideo"):
            if status == 400:  # not a lapsed link: the error stands, nothing else is tried
                with pytest.raises(errors.InvalidRequestError) as caught:
                    await client.download(job, tmp_path / "v.mp4")
                assert caught.value.task_id == job.id
            else:
                path = await client.download(job, tmp_path / "v.mp4")
                assert path.read_bytes() == VIDEO
    assert len(cdn.seen) == (2 if status == 400 else 3)
    assert client._connection.rate_limiter("sora").throttle_count == 1
    fallbacks = [r.getMessage() for r in caplog.records if "content endpoint" in r.getMessage()]
    assert fallbacks == (
        []
        if status == 400
        else [f"video URL of t1\\x1b[2Jforged refused ({status}); trying the content endpoint"]
    )


@pytest.mark.parametrize(
    ("content_type", "body", "summary"),
    [
        ("application/json", b'{"error": {"message": "signature expired"}}', "signature expired"),
        ("application/json", b'{"message": "quota exceeded", "code": 1}', "quota exceeded"),
        ("application/json", b'{"message": 42}', '{"message": 42}'),
        ("text/html", b"<h1>  Access\n denied </h1>", "<h1> Access denied </h1>"),
        ("text/plain", b"", "an empty body"),
        ("text/plain", b"\xffbad", "\ufffdbad"),
        ("text/plain", b"word " * 100, " ".join(["word"] * 24)),
    ],
)
async def test_a_page_instead_of_a_video_is_summarised(
    start_cdn: StartCdn, tmp_path: Path, content_type: str, body: bytes, summary: str
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, headers={"Content-Type": content_type.upper()})

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        with pytest.raises(errors.DownloadError) as caught:
            await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert type(caught.value) is errors.DownloadError
    assert str(caught.value) == f"expected a video, got {content_type}: {summary}"
    assert caught.value.task_id == "t1"
    assert list(tmp_path.iterdir()) == []


async def test_an_error_page_is_read_no_further_than_64_kib(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    head = b'{"error": {"message": "quota exceeded"}, "padding": "'
    body = head + b"x" * (64 * 1024 + 10 - len(head) - 2) + b'"}'

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        with pytest.raises(errors.DownloadError) as caught:
            await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    # Cut at 64 KiB the JSON no longer parses: the summary is its first 120 bytes.
    shown = body[:120].decode()
    assert str(caught.value) == f"expected a video, got application/json: {shown}"


async def test_a_video_without_a_content_type_is_still_a_video(tmp_path: Path) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(VIDEO)}\r\n\r\n".encode()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head + VIDEO)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    try:
        job = Job(id="t1", model="kling-v1", provider="kling", state=JobState.SUCCEEDED)
        async with Client(api_key="k", base_url=url, clock=ManualClock()) as client:
            path = await client.download(attrs.evolve(job, video_url=url + "v.mp4"), tmp_path)
    finally:
        server.close()
        await server.wait_closed()
    assert path.read_bytes() == VIDEO


@pytest.mark.parametrize(
    ("headers", "if_range"),
    [
        ({"ETag": '"v1"'}, '"v1"'),
        ({"Last-Modified": "Wed, 01 Jan 2025 00:00:00 GMT"}, "Wed, 01 Jan 2025 00:00:00 GMT"),
        ({"ETag": '"v1"', "Content-Encoding": "identity"}, '"v1"'),
        ({"ETag": '"v1"', "Content-Encoding": ""}, '"v1"'),
    ],
)
async def test_a_resume_names_the_version_it_continues(
    start_cdn: StartCdn, tmp_path: Path, headers: dict[str, str], if_range: str
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if "Range" not in request.headers:
            return await cut_short(request, at=12_000, headers=headers)
        return rest_of_video(12_000, **headers)

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        path = await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert path.read_bytes() == VIDEO
    assert len(cdn.seen) == 2
    assert cdn.seen[0]["Accept-Encoding"] == "identity"
    assert (cdn.seen[1]["Range"], cdn.seen[1]["If-Range"]) == ("bytes=12000-", if_range)
    assert cdn.files[1] == ["v.mp4.part"]  # the bytes so far, beside the destination
    assert calls_of(client) == [(0, None)]


async def test_a_range_of_unknown_total_length_completes_the_file(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if "Range" not in request.headers:
            return await cut_short(request, at=12_000, headers={"ETag": '"v1"'})
        return rest_of_video(12_000, total="*")

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        path = await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert path.read_bytes() == VIDEO
    assert len(cdn.seen) == 2


async def test_ranges_the_server_cuts_short_are_continued(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if "Range" not in request.headers:
            return await cut_short(request, at=10_000, headers={"ETag": '"v1"'})
        start = int(request.headers["Range"].removeprefix("bytes=").rstrip("-"))
        end = min(start + 10_000, len(VIDEO))  # a CDN that serves at most 10 kB per range
        span = f"bytes {start}-{end - 1}/{len(VIDEO)}"
        return video(VIDEO[start:end], status=206, headers={"Content-Range": span, "ETag": '"v1"'})

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        path = await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert path.read_bytes() == VIDEO
    assert [h.get("Range") for h in cdn.seen] == [None, "bytes=10000-", "bytes=20000-"]


async def test_a_header_split_across_reads_is_still_an_mp4(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(VIDEO))})
        response.content_type = "video/mp4"
        await response.prepare(request)
        for start in (0, 3, 6, 4096):
            await response.write(VIDEO[start : {0: 3, 3: 6, 6: 4096}.get(start, len(VIDEO))])
            for _ in range(20):  # let the client read each piece on its own
                await anyio.lowlevel.checkpoint()
        return response

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        path = await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert path.read_bytes() == VIDEO


async def test_tiny_bodies(start_cdn: StartCdn, tmp_path: Path) -> None:
    smallest = b"\0\0\0\x08ftyp\0\0\0\x08moov"
    bodies = iter([smallest, b"\0\0\0\x08fty", b"\0\0\0\x08ftyp", b"\0" * 4096])

    async def handler(request: web.Request) -> web.StreamResponse:
        return video(next(bodies))

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        # An empty ftyp box and an empty moov box: the shortest body that passes for a video.
        path = await client.download(cdn_job(cdn), tmp_path / "v.mp4")
        assert path.read_bytes() == smallest
        with pytest.raises(
            errors.IntegrityError, match=r"^the downloaded body is 7 bytes"
        ) as seven:
            await client.download(cdn_job(cdn), tmp_path / "w.mp4")
        # Eight bytes are a box header: long enough to be judged as an MP4, and found wanting.
        with pytest.raises(errors.IntegrityError, match=r"^.*not a playable MP4 \(no moov box\)$"):
            await client.download(cdn_job(cdn), tmp_path / "eight.mp4")
        with pytest.raises(
            errors.IntegrityError, match=r"^the downloaded body is not an MP4 \(no ftyp box\)$"
        ) as zeros:
            await client.download(cdn_job(cdn), tmp_path / "x.mp4")
    assert (seven.value.task_id, zeros.value.task_id) == ("t1", "t1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


async def test_a_download_that_always_drops_gives_up_after_max_attempts(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if len(cdn.seen) > 10:  # a client that never gives up gets the video, and fails
            return video()
        return await cut_short(request, at=1_000)

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        with pytest.raises(errors.DownloadError, match=r"^download failed after 4 attempts: ") as e:
            await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert e.value.task_id == "t1"
    assert len(cdn.seen) == 4
    assert calls_of(client) == [(0, None), (1, None), (2, None)]
    assert list(tmp_path.iterdir()) == []


@attrs.define
class ShortBody:
    """A response whose body stops after ``keep`` bytes, whatever its Content-Length says."""

    inner: HTTPResponse
    keep: int

    @property
    def status(self) -> int:
        return self.inner.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self.inner.headers

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in self.inner.iter_bytes():
            yield chunk[: self.keep - sent]
            sent += len(chunk)
            if sent >= self.keep:
                return

    async def read(self, limit: int | None = None) -> bytes:
        return await self.inner.read(limit)

    async def aclose(self) -> None:
        await self.inner.aclose()


class LenientTransport(AiohttpTransport):
    """A user's transport that, unlike aiohttp's, lets a body end before its Content-Length."""

    def __init__(self, keep: int) -> None:
        super().__init__()
        self.keep = keep

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        return ShortBody(await super().send(request), self.keep)


async def test_a_body_cut_between_two_boxes_is_caught_by_its_length(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    # Cut where mdat begins: ftyp, free and moov add up, so only the length tells.
    mdat_at = VIDEO.index(b"mdat") - 4

    async def handler(request: web.Request) -> web.StreamResponse:
        return video()

    cdn = await start_cdn(handler)
    async with Client(
        api_key="sk-test",
        base_url=cdn.url,
        clock=ManualClock(),
        retry_policy=RecordedBackoff(),
        transport=LenientTransport(keep=mdat_at),
    ) as client:
        with pytest.raises(errors.DownloadError) as caught:
            await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert str(caught.value) == (
        f"download failed after 4 attempts: connection ended after {mdat_at} of {len(VIDEO)} bytes"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_a_passing_error_is_retried(start_cdn: StartCdn, tmp_path: Path, status: int) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if len(cdn.seen) == 1:
            return json_error(status, "busy", {"Retry-After": "7"} if status == 429 else None)
        return video()

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        path = await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert path.read_bytes() == VIDEO
    assert len(cdn.seen) == 2
    assert calls_of(client) == [(0, 7.0 if status == 429 else None)]
    # A 429 on the video slows the job's provider: its API calls share the one rate.
    kling = client._connection.rate_limiter("kling")
    assert kling.throttle_count == (1 if status == 429 else 0)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, errors.InvalidRequestError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (410, errors.APIError),
        (501, errors.ServerError),
    ],
)
async def test_a_lasting_error_is_raised_at_once(
    start_cdn: StartCdn, tmp_path: Path, status: int, error: type[errors.APIError]
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return json_error(status, "no")

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        with pytest.raises(errors.APIError) as caught:
            await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert type(caught.value) is error
    assert caught.value.task_id == "t1"
    assert len(cdn.seen) == 1


async def test_a_server_error_that_lasts_is_raised_after_max_attempts(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return video() if len(cdn.seen) > 10 else json_error(503, "down")

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        with pytest.raises(errors.ServerError):
            await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert len(cdn.seen) == 4
    assert calls_of(client) == [(0, None), (1, None), (2, None)]


async def test_not_ready_waits_back_off_and_are_not_attempts(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if len(cdn.seen) <= 3:
            return json_error(400, "Task is not completed yet, current status: IN_PROGRESS")
        return video()

    cdn = await start_cdn(handler)
    clock = ManualClock()
    async with cdn_client(cdn, clock, RecordedBackoff(max_attempts=2, base_delay=0.5)) as client:
        path = await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert path.read_bytes() == VIDEO
    assert calls_of(client) == [(0, None), (1, None), (2, None)]
    assert clock.monotonic() == 0.5 + 1.0 + 2.0


async def test_not_ready_waits_end_with_the_window(start_cdn: StartCdn, tmp_path: Path) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return json_error(400, "Task is not completed yet")

    cdn = await start_cdn(handler)
    clock = ManualClock()
    clock.advance(100.0)
    async with cdn_client(
        cdn, clock, RecordedBackoff(base_delay=10.0, not_ready_window=0.5)
    ) as client:
        with pytest.raises(errors.InvalidRequestError):
            await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert clock.monotonic() == 100.5  # the last wait is cut to what is left of the window
    assert len(cdn.seen) == 2


async def test_a_cancelled_download_leaves_nothing(start_cdn: StartCdn, tmp_path: Path) -> None:
    sent, release = anyio.Event(), anyio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(VIDEO))})
        response.content_type = "video/mp4"
        await response.prepare(request)
        await response.write(VIDEO[:5_000])
        sent.set()
        await release.wait()
        return response

    cdn = await start_cdn(handler)
    part = tmp_path / "v.mp4.part"
    async with cdn_client(cdn, ManualClock()) as client, anyio.create_task_group() as group:
        group.start_soon(client.download, cdn_job(cdn), tmp_path / "v.mp4")
        await sent.wait()
        for _ in range(100):
            if part.exists():
                break
            await anyio.lowlevel.checkpoint()
        assert part.exists()
        group.cancel_scope.cancel()
    release.set()
    assert list(tmp_path.iterdir()) == []


async def test_a_dropped_encoded_body_restarts_without_a_range(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    encoded = gzip.compress(VIDEO)
    gz = {"Content-Encoding": "gzip", "ETag": '"v1"'}

    async def handler(request: web.Request) -> web.StreamResponse:
        if len(cdn.seen) == 1:
            return await cut_short(request, at=len(encoded) // 2, body=encoded, headers=gz)
        return web.Response(body=encoded, content_type="video/mp4", headers=gz)

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        path = await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert path.read_bytes() == VIDEO
    assert len(cdn.seen) == 2
    assert "Range" not in cdn.seen[1]


def box(kind: bytes, payload: bytes = b"", *, size: int | None = None) -> bytes:
    """One MP4 box; ``size`` overrides the length its header announces."""
    return (len(payload) + 8 if size is None else size).to_bytes(4, "big") + kind + payload


def boxes_end(data: bytes) -> int:
    return mp4_boxes_end(lambda count, at: data[at : at + count], len(data))


def test_where_the_boxes_say_a_file_ends() -> None:
    ftyp = box(b"ftyp", b"isom\0\0\0\0")
    assert boxes_end(VIDEO) == len(VIDEO)
    assert boxes_end(VIDEO[:-1]) == len(VIDEO)
    # mdat with size 0 runs to the end of the file, however long that is
    assert boxes_end(ftyp + box(b"mdat", b"x" * 100, size=0)) == len(ftyp) + 108
    # a 64-bit size follows the type when the 32-bit size is 1; 16 is its smallest
    large = (1).to_bytes(4, "big") + b"mdat" + (16 + 100).to_bytes(8, "big") + b"x" * 100
    empty_large = (1).to_bytes(4, "big") + b"free" + (16).to_bytes(8, "big")
    assert boxes_end(ftyp + large + empty_large) == len(ftyp) + 116 + 16
    # cut inside a header (at least the header is missing), or right after one
    assert boxes_end(ftyp + box(b"mdat", b"x" * 100)[:5]) == len(ftyp) + 8
    assert boxes_end(ftyp + box(b"mdat", b"x" * 100)[:8]) == len(ftyp) + 108
    assert boxes_end(ftyp + large[:12]) == len(ftyp) + 16
    assert boxes_end(ftyp + large[:16]) == len(ftyp) + 116
    # every byte of a 64-bit size counts, the highest too
    huge = (1).to_bytes(4, "big") + b"mdat" + (2**56 + 16).to_bytes(8, "big")
    assert boxes_end(ftyp + huge) == len(ftyp) + 2**56 + 16


def test_a_finished_file_is_whole_when_its_boxes_add_up_and_hold_moov(tmp_path: Path) -> None:
    ftyp = box(b"ftyp", b"isom")
    files = {
        "whole.mp4": (VIDEO, True),
        "cut.mp4": (VIDEO[:-1], False),
        "no_moov.mp4": (ftyp + box(b"mdat", b"x"), False),
        "no_ftyp.mp4": (box(b"moov", b"x") + box(b"mdat"), False),
        "bad_box.mp4": (ftyp + box(b"moov", size=7), False),
    }
    for name, (data, whole) in files.items():
        (tmp_path / name).write_bytes(data)
        assert is_complete_mp4(tmp_path / name) is whole, name
    assert is_complete_mp4(tmp_path / "missing.mp4") is False
    assert is_complete_mp4(tmp_path) is False  # a folder


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (box(b"ftyp", b"isom") + box(b"free", size=7), "^MP4 box at byte 12 has a size of 7$"),
        (
            box(b"ftyp", b"isom") + (1).to_bytes(4, "big") + b"free" + (15).to_bytes(8, "big"),
            "^MP4 box at byte 12 has a size of 15$",
        ),
        (box(b"free") * 100_001, "^more than 100000 top-level MP4 boxes$"),
    ],
)
def test_box_headers_no_mp4_has(data: bytes, message: str) -> None:
    with pytest.raises(errors.IntegrityError, match=message):
        boxes_end(data)


async def test_a_file_whose_last_box_runs_to_its_end_is_checked_by_length(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    # The boxes cannot tell this file is cut short; the announced length can.
    mdat = VIDEO.index(b"mdat") - 4
    whole = VIDEO[:mdat] + box(b"mdat", VIDEO[mdat + 8 :], size=0)

    async def handler(request: web.Request) -> web.StreamResponse:
        start = int(request.headers.get("Range", "bytes=0-").removeprefix("bytes=").rstrip("-"))
        end = min(start + 10_000, len(whole))  # a CDN that serves at most 10 kB at a time
        span = f"bytes {start}-{end - 1}/{len(whole)}"
        if "Range" not in request.headers:
            return await cut_short(request, at=10_000, body=whole, headers={"ETag": '"v1"'})
        return video(whole[start:end], status=206, headers={"Content-Range": span, "ETag": '"v1"'})

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        path = await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert path.read_bytes() == whole


async def test_a_range_cut_short_on_the_last_attempt_says_how_short(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if "Range" not in request.headers:
            return await cut_short(request, at=10_000, headers={"ETag": '"v1"'})
        span = f"bytes 10000-19999/{len(VIDEO)}"
        return video(VIDEO[10_000:20_000], status=206, headers={"Content-Range": span})

    cdn = await start_cdn(handler)
    # The first cut kept bytes for a resume (progress, not counted); then range, cut, range.
    async with cdn_client(cdn, ManualClock(), RecordedBackoff(max_attempts=3)) as client:
        with pytest.raises(errors.DownloadError) as caught:
            await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert str(caught.value) == (
        "download failed after 3 attempts: connection ended after 20000 of 30000 bytes"
    )
    assert isinstance(caught.value.__cause__, errors.TransportError)
    assert caught.value.__cause__.task_id == "t1"


@pytest.mark.parametrize(
    ("content_range", "shown"),
    [
        ("bytes 5000-29999/30000", "bytes 5000-29999/30000"),
        (None, "no Content-Range"),
        # the start asked for, but in a unit that is not bytes
        ("x-bytes 12000-29999/30000", "x-bytes 12000-29999/30000"),
        ("items 12000-29999/30000", "items 12000-29999/30000"),
    ],
)
async def test_a_range_answer_that_never_fits_fails_saying_why(
    start_cdn: StartCdn, tmp_path: Path, content_range: str | None, shown: str
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if "Range" not in request.headers:
            return await cut_short(request, at=12_000, headers={"ETag": '"v1"'})
        # Asked for bytes=12000-: a 206 from byte 5000, or with no range named at all.
        headers = {"Content-Range": content_range} if content_range else {}
        return video(VIDEO[5_000:], status=206, headers=headers)

    cdn = await start_cdn(handler)
    # The first cut kept bytes for a resume (progress, not counted); then range, cut, range.
    async with cdn_client(cdn, ManualClock(), RecordedBackoff(max_attempts=3)) as client:
        with pytest.raises(errors.DownloadError) as caught:
            await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert str(caught.value) == (
        "download failed after 3 attempts: the server answered with a range that does not "
        f"continue the file ({shown})"
    )
    assert isinstance(caught.value.__cause__, errors.TransportError)
    assert caught.value.__cause__.task_id == "t1"
    assert [h.get("Range") for h in cdn.seen] == [None, "bytes=12000-"] * 2


async def test_a_range_answered_with_the_whole_file_restarts_it(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if "Range" not in request.headers:
            return await cut_short(request, at=12_000, headers={"ETag": '"v1"'})
        return rest_of_video(0)

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        path = await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert path.read_bytes() == VIDEO
    assert len(cdn.seen) == 2


async def test_a_range_nobody_asked_for_is_refused(start_cdn: StartCdn, tmp_path: Path) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        # A first request, without Range, answered with the first 1000 bytes only.
        return video(VIDEO[:1_000], status=206, headers={"Content-Range": "bytes 0-999/30000"})

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock(), RecordedBackoff(max_attempts=2)) as client:
        with pytest.raises(errors.DownloadError) as caught:
            await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert str(caught.value) == (
        "download failed after 2 attempts: the server answered with a range that does not "
        "continue the file (bytes 0-999/30000)"
    )
    assert [h.get("Range") for h in cdn.seen] == [None, None]


async def test_a_part_file_removed_between_attempts_is_an_output_error(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    part = tmp_path / "v.mp4.part"

    async def handler(request: web.Request) -> web.StreamResponse:
        if "Range" not in request.headers:
            return await cut_short(request, at=12_000, headers={"ETag": '"v1"'})
        part.unlink()  # its folder stays; the bytes to continue are gone
        return rest_of_video(12_000)

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        with pytest.raises(errors.OutputError) as caught:
            await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert caught.value.errno == errno.ENOENT
    # The open .part took the rest of the bytes; renaming the unlinked file fails.
    assert caught.value.path in (str(part), str(tmp_path / "v.mp4"))
    assert list(tmp_path.iterdir()) == []


async def test_a_folder_removed_between_attempts_never_yields_a_patched_file(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    folder = tmp_path / "out"

    async def handler(request: web.Request) -> web.StreamResponse:
        if "Range" not in request.headers:
            return await cut_short(request, at=12_000, headers={"ETag": '"v1"'})
        shutil.rmtree(folder)  # the bytes already fetched are gone
        return rest_of_video(12_000)

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        try:
            path = await client.download(cdn_job(cdn), folder / "v.mp4")
        except OSError:
            assert not folder.exists() or list(folder.iterdir()) == []
        else:
            assert path.read_bytes() == VIDEO


@pytest.mark.parametrize(
    "body",
    [
        box(b"ftyp", b"isom\0\0\0\0") + box(b"mdat", b"x" * 5_000),
        VIDEO[: VIDEO.index(b"moov") - 4] + VIDEO[VIDEO.index(b"mdat") - 4 :],
    ],
    ids=["ftyp-mdat", "ftyp-free-mdat"],
)
async def test_point_4_a_body_without_moov_is_an_integrity_error(
    start_cdn: StartCdn, tmp_path: Path, body: bytes
) -> None:
    # Whole by every measure (no Content-Length to check; the box sizes add up),
    # yet no player can open it. Cut bodies: tests/test_hostile_answers.py.
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "video/mp4"
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(body)
        await response.write_eof()
        return response

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        with pytest.raises(errors.IntegrityError) as caught:
            await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert str(caught.value) == "the downloaded body is not a playable MP4 (no moov box)"
    assert caught.value.task_id == "t1"
    assert len(cdn.seen) == 1  # the same bytes would come again: not retried
    assert list(tmp_path.iterdir()) == []  # nothing under the final name, no .part


# -- point 5: slow drips and progress ---------------------------------------------------------


async def test_point_5_a_drip_fed_download_is_cut_by_the_minimum_rate(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    clock = ManualClock()

    async def handler(request: web.Request) -> web.StreamResponse:
        start = int(request.headers.get("Range", "bytes=0-").removeprefix("bytes=").rstrip("-"))
        status, headers = 200, {"ETag": '"v1"'}
        if start:
            status, headers["Content-Range"] = 206, f"bytes {start}-{len(VIDEO) - 1}/{len(VIDEO)}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = "video/mp4"
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for offset in range(start, len(VIDEO)):
                clock.advance(0.15)  # one byte per 0.15 s, as the injected clock tells it
                await response.write(VIDEO[offset : offset + 1])
                await asyncio.sleep(0)
        return response

    cdn = await start_cdn(handler)
    policy = RecordedBackoff(min_download_rate=100.0, download_rate_window=3.0)
    async with cdn_client(cdn, clock, policy) as client:
        with pytest.raises(errors.DownloadError) as caught:
            await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert re.match(
        r"^download failed after 4 attempts: the download fell below 100 bytes/s \(\d+ bytes in ",
        str(caught.value),
    )
    assert isinstance(caught.value.__cause__, errors.TimeoutError)
    assert caught.value.__cause__.task_id == "t1"
    # Each attempt resumed further on, yet a slow attempt always counts.
    assert len(cdn.seen) == 4
    assert "Range" in cdn.seen[1]
    assert calls_of(client) == [(0, None), (1, None), (2, None)]
    assert list(tmp_path.iterdir()) == []


def test_point_5_the_rate_floor_judges_each_window_by_its_bytes() -> None:
    floor = _RateFloor(rate=1000.0, window=2.0)
    floor.add(10, 1.9)  # far too slow, but the window is not over yet
    floor.add(1990, 0.1)  # 2000 bytes in 2 s: exactly the floor, counting both reads
    with pytest.raises(errors.TimeoutError) as caught:
        floor.add(1999, 2.0)  # a new window starts from nothing
    assert str(caught.value) == "the download fell below 1000 bytes/s (1999 bytes in 2 s)"
    no_floor = _RateFloor(rate=0.0, window=2.0)
    no_floor.add(1, 60.0)  # a rate of 0 turns the floor off


async def test_point_5_a_stalled_download_fails_after_the_read_timeout(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    release = anyio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(VIDEO))})
        response.content_type = "video/mp4"
        await response.prepare(request)
        await response.write(VIDEO[:1_000])
        await release.wait()  # then nothing at all
        return response

    cdn = await start_cdn(handler)
    # Real time, kept small: the stall timeout is the transport's, between socket reads.
    client = Client(
        api_key="k",
        base_url=cdn.url,
        clock=ManualClock(),
        retry_policy=RecordedBackoff(max_attempts=2),
        timeouts=Timeouts(read=0.2),
    )
    try:
        async with client:
            with pytest.raises(errors.DownloadError) as caught:
                await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    finally:
        release.set()
    assert str(caught.value).startswith("download failed after 2 attempts: ")
    assert isinstance(caught.value.__cause__, errors.TimeoutError)
    assert len(cdn.seen) == 2
    assert list(tmp_path.iterdir()) == []


async def test_point_5_a_file_cut_every_300_kb_arrives_because_each_cut_made_progress(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    big = make_mp4(3_000_000, "big")

    async def handler(request: web.Request) -> web.StreamResponse:
        return await cut_range(request, body=big, at_most=300_000)

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        path = await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert path.read_bytes() == big
    assert len(cdn.seen) == 10  # far past RetryPolicy.max_attempts (4)
    assert calls_of(client) == [(0, None)] * 9  # no cut that got further counted


async def test_point_5_a_cut_that_gets_no_further_counts(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    # Resumable, but the server always stops at the same byte: progress once, then none.
    async def handler(request: web.Request) -> web.StreamResponse:
        if "Range" not in request.headers:
            return await cut_short(request, at=12_000, headers={"ETag": '"v1"'})
        span = f"bytes 12000-{len(VIDEO) - 1}/{len(VIDEO)}"
        return await cut_short(
            request, at=0, body=VIDEO[12_000:], headers={"ETag": '"v1"', "Content-Range": span}
        )

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        with pytest.raises(errors.DownloadError, match=r"^download failed after 4 attempts"):
            await client.download(cdn_job(cdn), tmp_path / "v.mp4")
    assert len(cdn.seen) == 5  # the first made progress; four got nowhere
    assert calls_of(client) == [(0, None), (0, None), (1, None), (2, None)]


# -- point 6: typed errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:99999/v.mp4", "Port out of range 0-65535"),
        ("http://[::1/v.mp4", "Invalid IPv6 URL"),
        ("ftp://cdn.example/v.mp4", "ftp scheme, host 'cdn.example'"),
        ("http:///v.mp4", "http scheme, no host"),
        ("://cdn.example/v.mp4", "no scheme, no host"),
    ],
)
async def test_point_6_a_video_url_that_cannot_be_used_is_a_download_error(
    tmp_path: Path, url: str, reason: str
) -> None:
    job = Job(id="t1", model="kling-v1", provider="kling", state=JobState.SUCCEEDED, video_url=url)
    async with Client(api_key="k", base_url="http://127.0.0.1:9/", clock=ManualClock()) as client:
        with pytest.raises(errors.DownloadError) as caught:
            await client.download(job, tmp_path)
    assert type(caught.value) is errors.DownloadError
    assert str(caught.value) == f"the video URL cannot be used: {reason}"
    assert caught.value.task_id == "t1"
    assert list(tmp_path.iterdir()) == []


async def test_point_6_an_https_video_url_is_used(tmp_path: Path) -> None:
    url = "https://127.0.0.1:9/v.mp4"  # a closed port: the URL is tried, and the try fails
    job = Job(id="t1", model="kling-v1", provider="kling", state=JobState.SUCCEEDED, video_url=url)
    async with Client(api_key="k", base_url="http://127.0.0.1:9/", clock=ManualClock()) as client:
        with pytest.raises(errors.DownloadError, match=r"^download failed after 4 attempts: "):
            await client.download(job, tmp_path)


@pytest.mark.parametrize("where", ["folder is a file", "parent is a file"])
async def test_point_6_a_folder_that_is_a_file_is_an_output_error(
    start_cdn: StartCdn, tmp_path: Path, where: str
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return video()

    (tmp_path / "file").write_text("not a folder")
    dest = tmp_path / "file" / ("v.mp4" if where == "folder is a file" else "sub/v.mp4")
    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        with pytest.raises(errors.OutputError) as caught:
            await client.download(cdn_job(cdn), dest)
    assert caught.value.path == str(dest) + ".part"
    assert caught.value.task_id == "t1"
    assert isinstance(caught.value, OSError)  # code that caught OSError keeps working
    assert str(caught.value).startswith(f"cannot open {str(dest) + '.part'!r}: ")
    assert len(cdn.seen) == 1  # the disk is not retried
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs, where the test may mount one (root on Linux); else skipped."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


async def test_point_6_a_full_disk_is_an_output_error_with_the_path(
    start_cdn: StartCdn, small_disk: Path
) -> None:
    big = make_mp4(256 * 1024, "full")

    async def handler(request: web.Request) -> web.StreamResponse:
        return video(big)

    cdn = await start_cdn(handler)
    dest = small_disk / "v.mp4"
    async with cdn_client(cdn, ManualClock()) as client:
        with pytest.raises(errors.OutputError) as caught:
            await client.download(cdn_job(cdn), dest)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.path == str(dest) + ".part"
    assert str(caught.value) == f"cannot write {str(dest) + '.part'!r}: No space left on device"
    assert caught.value.task_id == "t1"
    assert list(small_disk.iterdir()) == []  # the .part is gone, the disk is free again


async def test_point_6_a_disk_found_full_only_when_the_last_bytes_are_flushed(
    start_cdn: StartCdn, small_disk: Path
) -> None:
    small = make_mp4(4_000, "small")  # less than one write buffer: no write reaches the disk

    async def handler(request: web.Request) -> web.StreamResponse:
        return video(small)

    with (small_disk / "filler").open("wb", buffering=0) as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"x" * 4096)
    cdn = await start_cdn(handler)
    dest = small_disk / "v.mp4"
    async with cdn_client(cdn, ManualClock()) as client:
        with pytest.raises(errors.OutputError) as caught:
            await client.download(cdn_job(cdn), dest)
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value) == f"cannot write {str(dest) + '.part'!r}: No space left on device"
    assert caught.value.task_id == "t1"
    assert len(cdn.seen) == 1  # the disk is not retried
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


async def test_point_6_a_destination_that_became_a_folder_is_an_output_error(
    start_cdn: StartCdn, tmp_path: Path
) -> None:
    dest = tmp_path / "v.mp4"

    async def handler(request: web.Request) -> web.StreamResponse:
        (dest / "inside").mkdir(parents=True)  # taken by a folder after the name was checked
        return video()

    cdn = await start_cdn(handler)
    async with cdn_client(cdn, ManualClock()) as client:
        with pytest.raises(errors.OutputError) as caught:
            await client.download(cdn_job(cdn), dest)
    assert caught.value.path == str(dest)
    assert caught.value.task_id == "t1"
    assert str(caught.value) == f"cannot save the video as {str(dest)!r}: Is a directory"
    assert caught.value.errno == errno.EISDIR
    assert len(cdn.seen) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]  # the folder; no .part


async def test_point_6_a_read_only_disk_is_an_output_error_with_the_path(
    start_cdn: StartCdn, small_disk: Path
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return video()

    await anyio.run_process(["mount", "-o", "remount,ro", str(small_disk)])
    cdn = await start_cdn(handler)
    dest = small_disk / "v.mp4"
    async with cdn_client(cdn, ManualClock()) as client:
        with pytest.raises(errors.OutputError) as caught:
            await client.download(cdn_job(cdn), dest)
    assert caught.value.errno == errno.EROFS
    assert caught.value.path == str(dest) + ".part"
    assert "Read-only file system" in str(caught.value)


async def test_point_6_a_journal_on_a_full_disk_is_an_output_error_with_its_path(
    small_disk: Path,
) -> None:
    path = small_disk / "journal.sqlite"
    journal = await SQLiteJournal.open(path)
    try:
        request = VideoRequest(prompt="x" * 20_000, model="kling-v1")

        async def fill_the_disk() -> None:
            for index in range(1_000):
                await journal.record_intent(index, request, f"key-{index}" * 1_000)

        with pytest.raises(errors.OutputError) as caught:
            await fill_the_disk()
        assert caught.value.path == str(path)
        assert str(caught.value).startswith(f"cannot write the journal {str(path)!r}: ")
    finally:
        await journal.close()
