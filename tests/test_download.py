"""Downloads: resumable, verified, key-safe, and never a half file under the final name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from asyncvideo import Client, Job, JobState, ManualClock, errors
from asyncvideo.testing import FakeGateway

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
