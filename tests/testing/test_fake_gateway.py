"""The FakeGateway over real HTTP, with a plain aiohttp client (not the SDK)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from asyncvideo import testing
from asyncvideo._clock import ManualClock
from asyncvideo.testing import FakeGateway, GatewayConfig, GatewayStats, make_mp4

pytestmark = pytest.mark.anyio

KEY = "sk-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
Json = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _json(response: aiohttp.ClientResponse) -> Json:
    body = await response.json(content_type=None)
    assert isinstance(body, dict)
    return body


async def _get(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Json]:
    kwargs.setdefault("headers", AUTH)
    async with http.get(url, **kwargs) as response:
        return response.status, await _json(response)


async def _post(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Json]:
    kwargs.setdefault("headers", AUTH)
    async with http.post(url, **kwargs) as response:
        return response.status, await _json(response)


async def _download(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, CIMultiDict[str]]:
    async with http.get(url, headers=headers or {}) as response:
        return response.status, await response.read(), CIMultiDict(response.headers)


async def _read_into(response: aiohttp.ClientResponse, buffer: bytearray) -> None:
    async for chunk in response.content.iter_any():
        buffer += chunk


def _form(**fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    return form


def test_public_names() -> None:
    assert testing.__all__ == sorted(testing.__all__, key=lambda n: (n[0].islower(), n))
    for name in testing.__all__:
        assert getattr(testing, name).__module__ == "asyncvideo.testing"


# -- MP4 bytes -----------------------------------------------------------------


def test_make_mp4_is_a_valid_box_sequence() -> None:
    data = make_mp4(4096, seed="video_1")
    assert len(data) == 4096
    boxes = []
    offset = 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        boxes.append((data[offset + 4 : offset + 8], size))
        offset += size
    assert offset == len(data)
    assert [name for name, _ in boxes] == [b"ftyp", b"free", b"moov", b"mdat"]
    assert data[8:12] == b"isom"
    moov = data.index(b"moov") - 4
    assert data[moov + 12 : moov + 16] == b"mvhd"  # a well-formed box inside
    assert int.from_bytes(data[moov + 8 : moov + 12], "big") == boxes[2][1] - 8
    assert make_mp4(4096, seed="video_1") == data
    assert make_mp4(4096, seed="video_2") != data
    with pytest.raises(ValueError, match="at least"):
        make_mp4(10)


# -- one create -> poll -> download per family -----------------------------------------


async def test_sora_multipart_create_poll_and_download(http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with FakeGateway(api_key=KEY, clock=clock, durations=40.0) as gw:
        form = _form(prompt="a cat", model="sora-2", seconds="8", size="1280x720")
        form.add_field("input_reference", b"\x89PNG", filename="cat.png", content_type="image/png")
        status, created = await _post(http, f"{gw.url}/v1/videos", data=form)
        assert status == 201
        assert created["object"] == "video"
        assert created["status"] == "queued"
        assert created["progress"] == 0
        assert re.fullmatch(r"video_[0-9a-f]{32}", created["id"])
        video_id = created["id"]

        seen = []
        for _ in range(5):
            status, body = await _get(http, f"{gw.url}/v1/videos/{video_id}")
            assert status == 200
            seen.append((body["status"], body["progress"]))
            clock.advance(10)
        assert seen[0] == ("queued", 0)
        assert seen[1][0] == "processing"
        assert 0 < seen[1][1] < seen[2][1] < seen[3][1] < 100
        assert seen[-1] == ("succeeded", 100)
        assert body["seconds"] == "8"
        assert body["size"] == "1280x720"
        assert body["expires_at"] - body["completed_at"] == 86400
        assert body["error"] is None
        assert body["url"].startswith(gw.cdn_url + "/files/")

        status, data, headers = await _download(http, body["url"])
        assert status == 200
        assert data == gw.video_content(video_id)
        assert data[4:8] == b"ftyp"
        assert headers["Content-Type"] == "video/mp4"

        status, data, headers = await _download(
            http, f"{gw.url}/v1/videos/{video_id}/content", AUTH
        )
        assert status == 200
        assert data == gw.video_content(video_id)
        assert headers["Content-Length"] == str(len(data))
        assert headers["Content-Disposition"] == f'attachment; filename="{video_id}.mp4"'
        assert headers["ETag"]

        captured = gw.requests[0]
        assert captured.method == "POST"
        assert captured.path == "/v1/videos"
        assert captured.headers["Authorization"] == f"Bearer {KEY}"
        assert captured.form == {
            "prompt": "a cat",
            "model": "sora-2",
            "seconds": "8",
            "size": "1280x720",
        }
        assert captured.files == {"input_reference": ("cat.png", "image/png", b"\x89PNG")}
        assert gw.tasks[video_id].duration == 40.0
        assert gw.stats.cdn_requests_with_auth == 0


async def test_wan_metadata_json_string(http: aiohttp.ClientSession) -> None:
    async with FakeGateway(api_key=KEY) as gw:
        form = _form(
            prompt="a kite",
            model="wan2.5-i2v-preview",
            seconds="5",
            size="1920*1080",
            metadata='{"img_url": "https://example.com/a.jpg", "watermark": false}',
        )
        status, created = await _post(http, f"{gw.url}/v1/videos", data=form)
        assert status == 201
        assert re.fullmatch(r"video_[0-9a-f-]{36}", created["id"])
        task = gw.tasks[created["id"]]
        assert task.provider == "wan"
        assert task.params["metadata"] == {
            "img_url": "https://example.com/a.jpg",
            "watermark": False,
        }
        assert (task.params["width"], task.params["height"]) == (1920, 1080)

        status, error = await _post(
            http,
            f"{gw.url}/v1/videos",
            data=_form(prompt="x", model="wanx2.1-i2v-plus", metadata="{"),
        )
        assert status == 400
        assert error["error"]["param"] == "metadata"
        assert error["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("model", "id_pattern", "words"),
    [
        ("kling-v1", r"kling_\d{18}", ["submitted", "processing", "succeed"]),
        ("jimeng_vgfm_t2v_l20", r"\d{19}", ["in_queue", "generating", "done"]),
        ("viduq1", r"vidu_\d{18}", ["created", "queueing", "processing", "success"]),
    ],
)
async def test_generations_native_vocabulary(
    http: aiohttp.ClientSession, model: str, id_pattern: str, words: list[str]
) -> None:
    clock = ManualClock()
    async with FakeGateway(api_key=KEY, clock=clock, durations=100.0) as gw:
        request = {
            "model": model,
            "prompt": "an astronaut",
            "duration": 5,
            "width": 512,
            "height": 512,
            "metadata": {"seed": 20231234},
        }
        status, created = await _post(http, f"{gw.url}/v1/video/generations", json=request)
        assert status == 200
        assert re.fullmatch(id_pattern, created["task_id"])
        assert created["status"] == words[0]
        url = f"{gw.url}/v1/video/generations/{created['task_id']}"

        seen: list[str] = []
        for _ in range(11):
            _, body = await _get(http, url)
            if not seen or seen[-1] != body["status"]:
                seen.append(body["status"])
            clock.advance(10)
        assert seen == words
        assert body["format"] == "mp4"
        assert body["metadata"] == {
            "duration": 5.0,
            "fps": 30,
            "height": 512,
            "seed": 20231234,
            "width": 512,
        }
        assert body["error"] is None
        status, data, _ = await _download(http, body["url"])
        assert status == 200
        assert data == gw.video_content(created["task_id"])
        assert gw.requests[0].json == request


async def test_generation_task_family(http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with FakeGateway(api_key=KEY, clock=clock, durations=30.0) as gw:
        status, created = await _post(
            http, f"{gw.url}/v1/videos/generations", json={"model": "sora-2", "prompt": "x"}
        )
        assert status == 200
        assert re.fullmatch(r"task_[0-9A-Z]{26}", created["id"])
        assert created["object"] == "generation.task"
        assert created["status"] == "submitted"
        url = f"{gw.url}/v1/videos/generations/{created['id']}"

        _, body = await _get(http, url)
        assert body["status"] == "queued"
        assert "completed_at" not in body
        assert "result" not in body
        clock.advance(15)
        _, body = await _get(http, url)
        assert body["status"] == "in_progress"
        clock.advance(15)
        _, body = await _get(http, url)
        assert body["status"] == "completed"
        assert body["progress"] == 100
        assert body["expires_at"] == body["completed_at"] + 86400
        status, data, _ = await _download(http, body["result"]["url"])
        assert status == 200
        assert data[4:8] == b"ftyp"


async def test_create_answer_delay_makes_the_task_before_answering(
    http: aiohttp.ClientSession,
) -> None:
    # The window a SIGKILL benchmark aims at: paid for, not yet told.
    async with FakeGateway(api_key=KEY, create_answer_delay=0.2) as gw:
        create = asyncio.ensure_future(
            _post(http, f"{gw.url}/v1/videos/generations", json={"model": "sora-2", "prompt": "x"})
        )
        for _ in range(100_000):
            if gw.stats.creates:
                break
            await asyncio.sleep(0)
        assert gw.stats.creates == 1
        assert not create.done()
        assert gw.stats.in_flight["create"] == 1
        status, created = await create
        assert status == 200
        assert list(gw.tasks) == [created["id"]]
        assert gw.stats.in_flight["create"] == 0


async def test_a_client_gone_before_its_answer_is_not_a_server_error(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeGateway(api_key=KEY, durations=0.0, latency=0.1) as gw:
        _, created = await _post(
            http, f"{gw.url}/v1/videos/generations", json={"model": "sora-2", "prompt": "x"}
        )
        _, body = await _get(http, f"{gw.url}/v1/videos/generations/{created['id']}")
        with pytest.raises(asyncio.TimeoutError):
            await http.get(body["result"]["url"], timeout=aiohttp.ClientTimeout(total=0.02))
        for _ in range(100):  # the CDN answers after its latency, to no one
            if not gw.stats.in_flight["cdn"]:
                break
            await asyncio.sleep(0.01)
        assert gw.stats.requests["cdn"] == 1
        assert gw.stats.in_flight["cdn"] == 0
        assert gw.stats.server_errors == 0
        assert not [r for r in caplog.records if r.name.startswith("aiohttp")]


async def test_failures_carry_an_error_object(http: aiohttp.ClientSession) -> None:
    async with FakeGateway(api_key=KEY, durations=0.0) as gw:
        _, created = await _post(
            http, f"{gw.url}/v1/video/generations", json={"model": "kling-v1", "prompt": "[fail]"}
        )
        _, body = await _get(http, f"{gw.url}/v1/video/generations/{created['task_id']}")
        assert body["status"] == "failed"
        assert body["error"]["code"] == "generation_failed"
        assert body["task_status_msg"] == body["error"]["message"]
        assert "url" not in body

        _, created = await _post(http, f"{gw.url}/v1/videos", data=_form(prompt="a [fail]"))
        _, body = await _get(http, f"{gw.url}/v1/videos/{created['id']}")
        assert body["status"] == "failed"
        assert body["error"]["code"] == "generation_failed"
        status, error = await _get(http, f"{gw.url}/v1/videos/{created['id']}/content")
        assert status == 400
        assert error["error"]["type"] == "invalid_request_error"


async def test_failure_rate_is_seeded() -> None:
    outcomes = []
    for _ in range(2):
        async with FakeGateway(api_key=KEY, failure_rate=0.5, seed=7) as gw:
            async with aiohttp.ClientSession() as http:
                for _ in range(20):
                    await _post(
                        http,
                        f"{gw.url}/v1/video/generations",
                        json={"model": "viduq1", "prompt": "p"},
                    )
            outcomes.append([task.outcome.value for task in gw.tasks.values()])
    assert outcomes[0] == outcomes[1]
    assert {"succeeded", "failed"} == set(outcomes[0])


# -- errors ----------------------------------------------------------------------


async def test_auth_is_required(http: aiohttp.ClientSession) -> None:
    async with FakeGateway(api_key=KEY) as gw:
        status, body = await _get(http, f"{gw.url}/v1/videos/x", headers={})
        assert status == 401
        assert body["error"]["type"] == "invalid_request_error"
        status, body = await _get(
            http, f"{gw.url}/v1/video/generations/x", headers={"Authorization": "Bearer sk-no"}
        )
        assert status == 401
        assert set(body) == {"code", "message", "param", "type"}
        assert "sk-no" not in body["message"]
        assert gw.stats.auth_failures == 2


async def test_unknown_task_shapes(http: aiohttp.ClientSession) -> None:
    async with FakeGateway(api_key=KEY, extra_api_keys=("sk-other",)) as gw:
        status, body = await _get(http, f"{gw.url}/v1/videos/video_nope")
        assert status == 404
        assert body == {
            "code": None,
            "message": "Task not found",
            "param": "task_id",
            "type": "invalid_request_error",
        }
        status, body = await _get(http, f"{gw.url}/v1/videos/generations/task_nope")
        assert status == 404
        assert body["error"]["type"] == "task_not_found"

        # Another key's task is invisible.
        _, created = await _post(http, f"{gw.url}/v1/videos", data=_form(prompt="mine"))
        status, _ = await _get(
            http,
            f"{gw.url}/v1/videos/{created['id']}",
            headers={"Authorization": "Bearer sk-other"},
        )
        assert status == 404

        gw.set_config(unknown_task_status=400)
        status, body = await _get(http, f"{gw.url}/v1/video/generations/nope")
        assert status == 400
        assert body["message"] == "Task not found"


async def test_create_validation(http: aiohttp.ClientSession) -> None:
    async with FakeGateway(api_key=KEY, quota=1) as gw:
        status, body = await _post(http, f"{gw.url}/v1/videos", data=_form(model="sora-2"))
        assert (status, body["error"]["param"]) == (400, "prompt")
        status, body = await _post(
            http, f"{gw.url}/v1/video/generations", json={"model": "gpt-video", "prompt": "x"}
        )
        assert (status, body["param"], body["type"]) == (400, "model", "invalid_request_error")
        status, body = await _post(
            http,
            f"{gw.url}/v1/videos",
            data=_form(prompt="[moderate] something"),
        )
        assert (status, body["error"]["code"]) == (422, "content_policy_violation")
        status, _ = await _post(http, f"{gw.url}/v1/videos", data=_form(prompt="ok"))
        assert status == 201
        status, body = await _post(http, f"{gw.url}/v1/videos", data=_form(prompt="again"))
        assert (status, body["error"]["type"]) == (402, "insufficient_quota")
        assert gw.stats.creates == 1
        assert gw.stats.create_requests == 5
        assert gw.stats.requests["create"] == 5


async def test_html_errors(http: aiohttp.ClientSession) -> None:
    async with (
        FakeGateway(api_key=KEY, html_errors=True) as gw,
        http.get(f"{gw.url}/v1/videos/x", headers=AUTH) as response,
    ):
        assert response.status == 404
        assert response.content_type == "text/html"
        assert "<html>" in await response.text()


# -- downloads -------------------------------------------------------------------------


async def test_range_resume_after_a_dropped_download(http: aiohttp.ClientSession) -> None:
    async with FakeGateway(
        api_key=KEY,
        durations=0.0,
        video_bytes=300_000,
        drop_download_after=100_000,
        drop_downloads=1,
    ) as gw:
        _, created = await _post(http, f"{gw.url}/v1/videos", data=_form(prompt="x"))
        url = f"{gw.url}/v1/videos/{created['id']}/content"
        expected = gw.video_content(created["id"])

        received = bytearray()
        async with http.get(url, headers=AUTH) as response:
            etag = response.headers["ETag"]
            assert response.headers["Content-Length"] == str(len(expected))
            with pytest.raises(aiohttp.ClientPayloadError):
                await _read_into(response, received)
        assert 0 < len(received) <= 100_000
        assert gw.stats.dropped_connections == 1

        headers = {**AUTH, "Range": f"bytes={len(received)}-", "If-Range": etag}
        status, rest, response_headers = await _download(http, url, headers)
        assert status == 206
        assert response_headers["Content-Range"] == (
            f"bytes {len(received)}-{len(expected) - 1}/{len(expected)}"
        )
        assert bytes(received) + rest == expected

        # A stale validator means the whole file again.
        headers = {**AUTH, "Range": "bytes=10-", "If-Range": '"stale"'}
        status, everything, _ = await _download(http, url, headers)
        assert (status, everything) == (200, expected)
        status, _, response_headers = await _download(
            http, url, {**AUTH, "Range": f"bytes={len(expected)}-"}
        )
        assert status == 416
        assert response_headers["Content-Range"] == f"bytes */{len(expected)}"

        # The CDN honours Range too.
        _, body = await _get(http, f"{gw.url}/v1/videos/{created['id']}")
        status, tail, _ = await _download(http, body["url"], {"Range": "bytes=-100"})
        assert (status, tail) == (206, expected[-100:])


async def test_cdn_redirect_expiry_and_auth_counter(http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with FakeGateway(api_key=KEY, clock=clock, durations=0.0, cdn_redirect=True) as gw:
        _, created = await _post(http, f"{gw.url}/v1/videos", data=_form(prompt="x"))
        async with http.get(
            f"{gw.url}/v1/videos/{created['id']}/content", headers=AUTH, allow_redirects=False
        ) as response:
            assert response.status == 302
            location = response.headers["Location"]
        assert location.startswith(gw.cdn_url)
        assert gw.cdn_url != gw.url

        status, _, _ = await _download(http, location, AUTH)  # a leaky client
        assert status == 200
        assert gw.stats.cdn_requests_with_auth == 1

        gw.script_failures("cdn", [503])
        async with http.get(location) as response:
            assert response.status == 503
            assert response.content_type == "application/xml"
        assert (await _download(http, location))[0] == 200

        clock.advance(86400 + 1)
        async with http.get(location) as response:
            assert response.status == 403
            assert "<Code>AccessDenied</Code>" in await response.text()
        status, body = await _get(http, f"{gw.url}/v1/videos/{created['id']}/content")
        assert (status, body["error"]["code"]) == (404, "video_expired")


# -- idempotency, limits and injected faults --------------------------------------------


async def test_idempotency_key_replays_the_same_task(http: aiohttp.ClientSession) -> None:
    async with FakeGateway(api_key=KEY) as gw:
        headers = {**AUTH, "Idempotency-Key": "req-1"}
        request = {"model": "kling-v1", "prompt": "x"}
        _, first = await _post(
            http, f"{gw.url}/v1/video/generations", json=request, headers=headers
        )
        _, again = await _post(
            http, f"{gw.url}/v1/video/generations", json=request, headers=headers
        )
        assert first["task_id"] == again["task_id"]
        assert gw.stats.creates == 1
        assert gw.stats.create_requests == 2
        assert gw.stats.idempotency_replays == 1
        assert gw.tasks[first["task_id"]].idempotency_key == "req-1"

        # Ambiguous outcome: the task is made, the client sees a 502, the retry replays it.
        gw.script_failures("create", [502], after_processing=True)
        headers = {**AUTH, "Idempotency-Key": "req-2"}
        status, _ = await _post(
            http, f"{gw.url}/v1/videos", data=_form(prompt="y"), headers=headers
        )
        assert status == 502
        assert gw.stats.creates == 2
        status, replay = await _post(
            http, f"{gw.url}/v1/videos", data=_form(prompt="y"), headers=headers
        )
        assert status == 201
        assert gw.tasks[replay["id"]].idempotency_key == "req-2"
        assert gw.stats.creates == 2


@pytest.mark.parametrize(
    ("mode", "header", "value"),
    [("seconds", "Retry-After", "1"), ("ms", "retry-after-ms", "500"), ("none", None, None)],
)
async def test_rate_limit_429(
    http: aiohttp.ClientSession, mode: str, header: str | None, value: str | None
) -> None:
    clock = ManualClock()
    async with FakeGateway(api_key=KEY, clock=clock, rate_limit=2.0, retry_after=mode) as gw:
        url = f"{gw.url}/v1/videos/nope"
        assert (await _get(http, url))[0] == 404
        assert (await _get(http, url))[0] == 404
        async with http.get(url, headers=AUTH) as response:
            assert response.status == 429
            body = await _json(response)
            assert body["error"]["type"] == "rate_limit_exceeded"
            if header is None:
                assert "Retry-After" not in response.headers
                assert "retry-after-ms" not in response.headers
            else:
                assert response.headers[header] == value
        clock.advance(0.5)
        assert (await _get(http, url))[0] == 404
        assert gw.stats.rate_limited == 1
        assert gw.stats.to_dict()["responses"] == {"404": 3, "429": 1}


async def test_max_concurrent_tasks(http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with FakeGateway(api_key=KEY, clock=clock, durations=10.0, max_concurrent_tasks=2) as gw:
        url = f"{gw.url}/v1/video/generations"
        request = {"model": "viduq1", "prompt": "x"}
        assert (await _post(http, url, json=request))[0] == 200
        assert (await _post(http, url, json=request))[0] == 200
        status, body = await _post(http, url, json=request)
        assert (status, body["code"]) == (429, "concurrency_limit_exceeded")
        clock.advance(10)
        assert (await _post(http, url, json=request))[0] == 200
        assert gw.stats.max_active_tasks == {KEY: 2}


async def test_scripted_and_random_failures(http: aiohttp.ClientSession) -> None:
    async with FakeGateway(api_key=KEY) as gw:
        _, created = await _post(http, f"{gw.url}/v1/videos", data=_form(prompt="x"))
        url = f"{gw.url}/v1/videos/{created['id']}"
        gw.script_failures("status", [503, 500, 0, 0])
        statuses = [(await _get(http, url))[0] for _ in range(2)]
        assert statuses == [503, 500]
        # aiohttp quietly retries an idempotent request once, so two drops surface.
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await _get(http, url)
        assert (await _get(http, url))[0] == 200
        assert gw.stats.server_errors == 2
        assert gw.stats.dropped_connections == 2

        gw.set_config(error_rate_5xx=1.0)
        status, body = await _get(http, url)
        assert status in (500, 502, 503)
        assert body["error"]["type"] == "server_error"
        with pytest.raises(ValueError, match="after_processing"):
            gw.script_failures("status", [500], after_processing=True)


async def test_webhook_delivered_when_task_finishes(http: aiohttp.ClientSession) -> None:
    received: list[Json] = []
    done = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        hook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        clock = ManualClock()
        async with FakeGateway(api_key=KEY, clock=clock, durations=30.0) as gw:
            request = {"model": "viduq1", "prompt": "x", "metadata": {"callback_url": hook_url}}
            _, created = await _post(http, f"{gw.url}/v1/video/generations", json=request)
            clock.advance(30)
            await asyncio.wait_for(done.wait(), timeout=5)
            # Vidu calls back itself, with its own task body (not the gateway's).
            assert received[0]["id"] == created["task_id"]
            assert received[0]["state"] == "success"
            assert received[0]["creations"][0]["url"].startswith(gw.cdn_url)
            # The gateway counts the delivery once the hook's answer reaches it.
            for _ in range(500):
                if gw.stats.webhook_deliveries:
                    break
                await asyncio.sleep(0.01)
            assert gw.stats.webhook_deliveries == 1
    finally:
        await runner.cleanup()


# -- quirks, clock and counters ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "path"),
    [("url", ("url",)), ("result.url", ("result", "url")), ("video_url", ("video_url",))],
)
async def test_quirks(http: aiohttp.ClientSession, field: Any, path: tuple[str, ...]) -> None:
    clock = ManualClock()
    async with FakeGateway(
        api_key=KEY,
        clock=clock,
        durations=20.0,
        status_case="upper",
        progress_style="percent_string",
        timestamps_ms=True,
        url_field=field,
        create_status=200,
    ) as gw:
        status, created = await _post(http, f"{gw.url}/v1/videos", data=_form(prompt="x"))
        assert status == 200
        assert created["created_at"] == int(clock.time() * 1000)
        clock.advance(10)
        _, body = await _get(http, f"{gw.url}/v1/videos/{created['id']}")
        assert (body["status"], body["progress"]) == ("PROCESSING", "50%")
        clock.advance(10)
        _, body = await _get(http, f"{gw.url}/v1/videos/{created['id']}")
        assert body["status"] == "SUCCEEDED"
        node: Any = body
        for key in path:
            node = node[key]
        assert node.startswith(gw.cdn_url)

        gw.set_config(url_field="none", status_case="mixed")
        _, body = await _get(http, f"{gw.url}/v1/videos/{created['id']}")
        assert body["status"] == "Succeeded"
        assert "url" not in body


async def test_stats_counters_and_reset(http: aiohttp.ClientSession) -> None:
    async with FakeGateway(api_key=KEY, durations=0.0, video_bytes=10_000) as gw:
        _, created = await _post(http, f"{gw.url}/v1/videos", data=_form(prompt="x"))
        await _get(http, f"{gw.url}/v1/videos/{created['id']}")
        await _download(http, f"{gw.url}/v1/videos/{created['id']}/content", AUTH)
        await _get(http, f"{gw.url}/nowhere")

        status, served = await _get(http, f"{gw.url}/_sim/stats", headers={})
        assert status == 200
        stats = gw.stats
        assert isinstance(stats, GatewayStats)
        assert served == stats.to_dict()
        assert served["requests"] == {"create": 1, "status": 1, "content": 1, "cdn": 0, "other": 1}
        assert served["routes"]["GET /v1/videos/{task_id}/content"] == 1
        assert served["creates_by_model"] == {"sora-2": 1}
        assert served["bytes_served"] == 10_000
        assert served["max_in_flight"]["create"] == 1
        assert served["in_flight"]["content"] == 0
        assert served["total_requests"] == 4

        status, _ = await _post(http, f"{gw.url}/_sim/reset", headers={})
        assert status == 200
        assert gw.stats is stats
        assert stats.total_requests == 0
        assert gw.requests == []


async def test_config_object_overrides_and_runtime_changes(http: aiohttp.ClientSession) -> None:
    config = GatewayConfig(api_key="sk-a", time_scale=0.5)
    async with FakeGateway(config=config, api_key=KEY) as gw:
        assert gw.config.time_scale == 0.5
        assert gw.api_key == KEY
        with pytest.raises(ValueError, match="cannot change"):
            gw.set_config(port=1)
        status, body = await _post(
            http, f"{gw.url}/_sim/config", json={"rate_limit": 1}, headers={}
        )
        assert (status, body["rate_limit"]) == (200, 1)
        assert gw.config.rate_limit == 1
    with pytest.raises(ValueError, match="vocabulary"):
        GatewayConfig(vocabulary="weird")  # type: ignore[arg-type]


# -- the openai package against vocabulary="openai" -------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # openai marks the Sora API deprecated
async def test_openai_package_round_trip() -> None:
    openai = pytest.importorskip("openai")
    async with FakeGateway(
        api_key=KEY, vocabulary="openai", time_scale=0.001, durations=20.0, poll_after_ms=5
    ) as gw:
        async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=gw.api_key) as client:
            video = await client.videos.create(
                prompt="a cat", model="sora-2", seconds="4", size="720x1280"
            )
            assert video.status == "queued"
            assert video.object == "video"
            fetched = await client.videos.retrieve(video.id)
            assert fetched.id == video.id
            done = await client.videos.create_and_poll(prompt="a dog", model="sora-2")
            assert done.status == "completed"
            assert done.progress == 100
            assert done.completed_at is not None
            assert done.expires_at is not None
            assert done.error is None
            assert done.remixed_from_video_id is None
            content = await client.videos.download_content(done.id)
            data = content.read()
        assert data[4:8] == b"ftyp"
        assert data == gw.video_content(done.id)
        assert gw.requests[0].form["seconds"] == "4"


async def test_standalone_module_prints_url() -> None:
    root = ROOT
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asyncvideo.testing",
        "--port",
        "0",
        "--api-key",
        "sk-cli",
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
        url = first.split()[-1]
        assert url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            status, _ = await _get(
                http, f"{url}/v1/videos/x", headers={"Authorization": "Bearer sk-cli"}
            )
        assert status == 404
    finally:
        process.terminate()
        await process.wait()
        assert process.stdout is not None
        await process.stdout.read()


# -- profiles of real gateway code bases ----------------------------------------------------


async def test_new_api_profile_wire(http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with FakeGateway(api_key=KEY, clock=clock, durations=100.0, profile="new-api") as gw:
        request = {"model": "kling-v1", "prompt": "an astronaut"}
        status, created = await _post(http, f"{gw.url}/v1/video/generations", json=request)
        # dto/openai_video.go: one video object on every create path, the public id twice.
        assert status == 200
        assert re.fullmatch(r"task_[A-Za-z0-9]{32}", created["id"])
        assert (created["task_id"], created["object"], created["status"]) == (
            created["id"],
            "video",
            "queued",
        )
        task_id = created["id"]
        url = f"{gw.url}/v1/video/generations/{task_id}"
        seen: list[tuple[str, str]] = []
        for _ in range(22):
            _, body = await _get(http, url)
            assert (body["code"], body["message"]) == ("success", "")
            dto = body["data"]
            if not seen or seen[-1][0] != dto["status"]:
                seen.append((dto["status"], dto["progress"]))
            clock.advance(5)
        assert seen[0] == ("NOT_START", "0%")
        assert [word for word, _ in seen] == ["NOT_START", "QUEUED", "IN_PROGRESS", "SUCCESS"]
        assert seen[-1][1] == "100%"
        assert (dto["id"], dto["task_id"]) == (1, task_id)
        assert dto["result_url"] == gw.video_url(task_id)
        assert dto["finish_time"] > dto["submit_time"] > 1e9  # seconds
        assert dto["data"]["task_id"] == gw.tasks[task_id].upstream_id != task_id
        # The OpenAI-style status of the same task; the ali converter leaves task_id out.
        _, video = await _get(http, f"{gw.url}/v1/videos/{task_id}")
        assert (video["id"], video["status"], video["model"]) == (task_id, "completed", "")
        assert video["metadata"] == {"url": gw.video_url(task_id)}
        assert video["created_at"] > 1e12  # Kling's times in milliseconds
        status, missing = await _get(http, f"{gw.url}/v1/video/generations/task_nope")
        assert (status, missing) == (
            400,
            {"code": "task_not_exist", "message": "task_not_exist", "data": None},
        )


async def test_new_api_content_lags_behind_success(http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with FakeGateway(api_key=KEY, clock=clock, durations=10.0, profile="new-api") as gw:
        _, created = await _post(http, f"{gw.url}/v1/videos", data=_form(prompt="p"))
        content = f"{gw.url}/v1/videos/{created['id']}/content"
        clock.advance(10)
        _, video = await _get(http, f"{gw.url}/v1/videos/{created['id']}")
        assert video["status"] == "succeeded"  # Sora: the upstream's own body
        status, body = await _get(http, content)
        assert status == 400
        assert body == {
            "error": {
                "message": "Task is not completed yet, current status: IN_PROGRESS",
                "type": "invalid_request_error",
            }
        }
        clock.advance(gw.config.content_lag or 3.0)
        status, data, headers = await _download(http, content, AUTH)
        assert (status, headers["Cache-Control"]) == (200, "public, max-age=86400")
        assert data == gw.video_content(created["id"])
        status, body = await _get(http, f"{gw.url}/v1/videos/task_nope/content")
        assert (status, body["error"]["message"]) == (404, "Task not found")


async def test_litellm_profile_ids_gzip_and_errors(http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with FakeGateway(api_key=KEY, clock=clock, durations=10.0, profile="litellm") as gw:
        status, created = await _post(http, f"{gw.url}/v1/videos", data=_form(prompt="p"))
        assert status == 200
        task_id = created["id"]
        assert task_id.startswith("video_")
        clock.advance(10)
        status, body = await _get(http, f"{gw.url}/v1/videos/{task_id}")
        assert status == 200
        assert body["id"] != task_id  # re-encoded without the model
        video_object_fields = (
            "id object status created_at completed_at expires_at error progress "
            "remixed_from_video_id seconds size model usage"
        )
        assert sorted(body) == sorted(video_object_fields.split(" "))
        # The status id cannot be routed: the proxy tries api.openai.com and fails.
        status, poisoned = await _get(http, f"{gw.url}/v1/videos/{body['id']}")
        assert (status, poisoned["error"]["code"]) == (500, "500")
        content = f"{gw.url}/v1/videos/{task_id}/content"
        async with http.get(content, headers={**AUTH, "Accept-Encoding": "gzip"}) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert response.content_length != gw.tasks[task_id].video_bytes
            assert "ETag" not in response.headers
            assert await response.read() == gw.video_content(task_id)
        async with http.get(content, headers={**AUTH, "Accept-Encoding": "identity"}) as response:
            assert "Content-Encoding" not in response.headers
            assert response.content_length == gw.tasks[task_id].video_bytes
        unknown = (
            "video_"
            + base64.b64encode(
                b"litellm:custom_llm_provider:openai;model_id:sora-2;video_id:video_nope"
            ).decode()
        )
        status, missing = await _get(http, f"{gw.url}/v1/videos/{unknown}")
        assert (status, missing["error"]["code"]) == (404, "404")
        assert '\\"message\\": \\"Task not found\\"' in json.dumps(missing["error"]["message"])


async def test_a_drop_rate_cuts_about_that_share_of_downloads(http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with FakeGateway(
        api_key=KEY, clock=clock, durations=1.0, drop_download_after=100, drop_download_rate=0.25
    ) as gw:
        _, created = await _post(http, f"{gw.url}/v1/videos", data=_form(prompt="p"))
        clock.advance(5)
        content = f"{gw.url}/v1/videos/{created['id']}/content"
        whole = 0
        for _ in range(200):
            async with http.get(content, headers=AUTH) as response:
                try:
                    await response.read()
                    whole += 1
                except aiohttp.ClientPayloadError:
                    pass
        assert 120 <= whole <= 180  # about three in four arrive whole
        assert gw.stats.dropped_connections == 200 - whole
