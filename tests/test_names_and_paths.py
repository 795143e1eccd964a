"""Issue 9, point 9: task ids a gateway (or a caller) chooses cannot break file
names, URL paths or log lines."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from asyncvideo import Client, Job, JobState, ManualClock
from asyncvideo._download import safe_filename
from asyncvideo._logtext import printable
from asyncvideo.errors import CreateOutcomeUnknown, JobTimeoutError, ValidationError

pytestmark = pytest.mark.anyio

KEY = "sk-names-test"


def test_point_9_a_100_character_cjk_id_fits_the_255_byte_name_limit(tmp_path: Path) -> None:
    long_id = "视" * 100
    other = "视" * 99 + "频"
    name = safe_filename(long_id)
    batch_name = f"{999_999:06d}_{name}.mp4.part"  # the longest name a batch writes
    assert len(batch_name.encode()) <= 255
    (tmp_path / batch_name).write_bytes(b"")  # the file system agrees
    assert name.startswith("视" * 30)
    assert safe_filename(other) != name  # cut names stay apart
    assert safe_filename(long_id) == name  # and are stable across runs
    assert safe_filename("video_1") == "video_1"  # short ids keep their names
    assert safe_filename("") == "video"


@pytest.fixture
async def seen_paths() -> AsyncIterator[tuple[str, list[str]]]:
    paths: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        paths.append(request.raw_path)
        return web.json_response({"id": "..", "status": "queued"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), paths
    await server.close()


@pytest.mark.parametrize("task_id", ["..", "."])
async def test_point_9_a_dot_segment_id_is_refused_before_any_request(
    seen_paths: tuple[str, list[str]], task_id: str
) -> None:
    url, paths = seen_paths
    async with Client(api_key=KEY, base_url=url, clock=ManualClock()) as client:
        with pytest.raises(ValidationError, match="cannot name a task") as caught:
            await client.get(task_id, model="sora-2")
        assert caught.value.field == "task_id"
        job = Job(id=task_id, model="sora-2", provider="sora", state=JobState.QUEUED)
        with pytest.raises(ValidationError):
            await client.refresh(job)
    assert paths == []  # GET /v1/videos/.. (that is, /v1/) was never sent


async def test_point_9_a_create_answer_naming_a_dot_segment_is_an_unknown_outcome(
    seen_paths: tuple[str, list[str]],
) -> None:
    url, paths = seen_paths
    async with Client(api_key=KEY, base_url=url, clock=ManualClock()) as client:
        with pytest.raises(CreateOutcomeUnknown) as caught:
            await client.submit(prompt="a cat", model="sora-2", idempotency_key="key-9")
    assert caught.value.idempotency_key == "key-9"
    assert paths == ["/v1/videos"]


async def test_point_9_an_id_with_a_slash_stays_one_path_segment(
    seen_paths: tuple[str, list[str]],
) -> None:
    url, paths = seen_paths
    async with Client(api_key=KEY, base_url=url, clock=ManualClock()) as client:
        job = Job(id="../admin", model="sora-2", provider="sora", state=JobState.QUEUED)
        await client.refresh(job)
    assert paths == ["/v1/videos/..%2Fadmin"]


async def test_point_9_a_newline_in_a_task_id_cannot_forge_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def busy(request: web.Request) -> web.StreamResponse:
        # The gateway echoes the id (and a line of its own) in its message.
        message = f"task {request.match_info['tail']} busy\nINFO asyncvideo: all fine"
        return web.json_response({"error": {"message": message}}, status=503)

    app = web.Application()
    app.router.add_route("*", r"/{tail:[\s\S]*}", busy)  # the id holds a newline
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    forged = "task_1\nERROR asyncvideo: forged line"
    url = str(server.make_url("")).rstrip("/")
    try:
        async with Client(api_key=KEY, base_url=url, clock=ManualClock()) as client:
            job = Job(id=forged, model="sora-2", provider="sora", state=JobState.QUEUED)
            with (
                caplog.at_level(logging.DEBUG, logger="asyncvideo"),
                pytest.raises(JobTimeoutError),
            ):
                await client.wait(job, timeout=5)
    finally:
        await server.close()
    polls = [r.getMessage() for r in caplog.records if r.getMessage().startswith("poll of")]
    assert polls  # each failed poll was logged ...
    for record in caplog.records:
        assert "\n" not in record.getMessage()  # ... on one line
    assert "task_1\\nERROR asyncvideo: forged line" in polls[0]


def test_point_9_log_text_escapes_control_characters_and_is_bounded() -> None:
    assert printable("a\nb\r\x1b[31mc\u2028") == "a\\nb\\r\\x1b[31mc\\u2028"
    assert printable("视频 ok") == "视频 ok"
    assert len(printable("x" * 10_000)) <= 501
