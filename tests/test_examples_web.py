"""The web-app examples, served for real on loopback against the FakeGateway.

``examples/fastapi_app.py`` runs under uvicorn and ``examples/aiohttp_app.py``
under aiohttp's own runner; the test talks to them over HTTP as a browser or an
API caller would, and the FakeGateway calls their webhook route back, signed.
The clock is real (uvicorn and the gateway's callbacks run on it), so the jobs
are short: a run takes about a second.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web

from asyncvideo import Job, PollPolicy
from asyncvideo.testing import FakeGateway

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SECRET = "whsec-example-test"
#: the examples' clients poll 20x sooner than against a real gateway
SCALE = 0.05
#: models whose creates carry a callback URL, and one (Sora) whose do not
MODELS = ("viduq1", "kling-v1", "sora-2")


def _load(name: str) -> Any:
    sys.path.insert(0, str(EXAMPLES))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(EXAMPLES))


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _client_options(gateway: FakeGateway, port: int) -> dict[str, Any]:
    return {
        "api_key": gateway.api_key,
        "base_url": gateway.url,
        "webhook_url": f"http://127.0.0.1:{port}/hooks/video",
        "webhook_secret": SECRET,
        # A lost callback would leave a job to its safety poll, ten minutes away: the
        # jobs below can only finish in time because their callbacks woke them.
        "poll_policy": attrs.evolve(PollPolicy().scaled(SCALE), callback_interval=600.0),
    }


@asynccontextmanager
async def fastapi_app(
    gateway: FakeGateway,
) -> AsyncIterator[tuple[str, Callable[[], dict[str, Job]]]]:
    uvicorn = pytest.importorskip("uvicorn")
    module = _load("fastapi_app")
    sock = _listening_socket()
    port = sock.getsockname()[1]
    app = module.create_app(**_client_options(gateway, port))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not serving.done(), "uvicorn stopped while starting"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}", lambda: app.state.videos.finished
    finally:
        server.should_exit = True
        await serving
        sock.close()


@asynccontextmanager
async def aiohttp_app(
    gateway: FakeGateway,
) -> AsyncIterator[tuple[str, Callable[[], dict[str, Job]]]]:
    module = _load("aiohttp_app")
    sock = _listening_socket()
    port = sock.getsockname()[1]
    app = module.create_app(**_client_options(gateway, port))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{port}", lambda: app[module.VIDEOS].finished
    finally:
        await runner.cleanup()
        sock.close()


APPS = {"fastapi": fastapi_app, "aiohttp": aiohttp_app}


def _signed(body: bytes, secret: str, *, delivery: str) -> dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {
        "Content-Type": "application/json",
        "X-Asyncvideo-Timestamp": timestamp,
        "X-Asyncvideo-Delivery": delivery,
        "X-Asyncvideo-Signature": f"v1={digest.hexdigest()}",
    }


async def _until(condition: Callable[[], bool], *, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the app did not get there in time"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("kind", sorted(APPS))
async def test_submit_follow_by_callback_and_stream(kind: str) -> None:
    async with (
        FakeGateway(webhook_secret=SECRET, durations=(0.3, 0.5), video_bytes=96 * 1024) as gateway,
        APPS[kind](gateway) as (app_url, finished),
        aiohttp.ClientSession(app_url) as http,
    ):
        refs: dict[str, str] = {}
        for model in MODELS:
            async with http.post("/videos", json={"prompt": f"a {model} fox", "model": model}) as r:
                assert r.status == 202
                refs[model] = (await r.json())["ref"]
        assert gateway.stats.creates == len(MODELS)

        await _until(lambda: len(finished()) == len(MODELS))
        jobs = {job.model: job for job in finished().values()}
        assert all(job.succeeded for job in jobs.values())
        # The callback woke the two jobs that carry one: one confirming status query each.
        # Sora takes no callback URL, so its job was polled on the (scaled) schedule.
        by_task = _status_requests_by_task(gateway)
        assert by_task[jobs["viduq1"].id] == 1
        assert by_task[jobs["kling-v1"].id] == 1
        assert gateway.stats.webhook_deliveries >= 2

        for model, ref in refs.items():
            async with http.get(f"/videos/{ref}") as r:
                assert r.status == 200
                answer = await r.json()
                assert (answer["state"], answer["ref"]) == ("succeeded", ref)
            async with http.get(f"/videos/{ref}/content") as r:
                assert r.status == 200
                assert r.headers["Content-Type"] == "video/mp4"
                body = await r.read()
            assert body == gateway.video_content(jobs[model].id), model


@pytest.mark.parametrize("kind", sorted(APPS))
async def test_bad_refs_unready_videos_and_forged_callbacks_change_nothing(kind: str) -> None:
    async with (
        FakeGateway(
            webhook_secret=SECRET, durations=(30.0, 30.0), webhook_drop_rate=1.0
        ) as gateway,
        APPS[kind](gateway) as (app_url, finished),
        aiohttp.ClientSession(app_url) as http,
    ):
        async with http.post("/videos", json={"prompt": "a slow fox", "model": "viduq1"}) as r:
            ref = (await r.json())["ref"]
        async with http.get(f"/videos/{ref}/content") as r:
            assert r.status == 409
        async with http.get("/videos/not-a-ref") as r:
            assert r.status == 404
        async with http.post("/videos", json={"prompt": " ", "model": "viduq1"}) as r:
            assert r.status == 422

        statuses = gateway.stats.requests["status"]
        task_id = next(iter(gateway.tasks))
        forged = json.dumps({"id": task_id, "state": "success", "model": "viduq1"}).encode()
        for headers in (
            _signed(forged, "not-the-secret", delivery="d-1"),
            {"Content-Type": "application/json"},
        ):
            async with http.post("/hooks/video", data=forged, headers=headers) as r:
                assert r.status == 401
        await asyncio.sleep(0.1)  # a woken job would have polled by now
        assert gateway.stats.requests["status"] == statuses
        assert finished() == {}
        assert gateway.stats.creates == 1


def _status_requests_by_task(gateway: FakeGateway) -> Mapping[str, int]:
    counts: dict[str, int] = {}
    for request in gateway.requests:
        if request.kind == "status":
            task_id = request.path.rstrip("/").rsplit("/", 1)[-1]
            counts[task_id] = counts.get(task_id, 0) + 1
    return counts
