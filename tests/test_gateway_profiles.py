"""The SDK against the shapes real gateway code bases send (FakeGateway profiles).

Each test pins one wire exchange that broke clips before: ids that change
between answers, a relay's envelope and row id, a content endpoint that lags
behind the status, encoded video bodies, and errors told by their code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncvideo import JobState, ManualClock, RetryPolicy
from asyncvideo.errors import ContentPolicyError, InvalidRequestError, NotFoundError
from asyncvideo.testing import FakeGateway
from asyncvideo.testing._relays import litellm_decode

from .conftest import ClientFactory

pytestmark = pytest.mark.anyio


# -- new-api relay ------------------------------------------------------------------------


async def test_new_api_generations_keep_the_public_task_id(
    make_client: ClientFactory, gateway: FakeGateway, tmp_path: Path
) -> None:
    gateway.set_config(profile="new-api")
    client = make_client()
    job = await client.submit(prompt="moonwalk", model="kling-v1")
    assert job.id.startswith("task_")
    assert len(job.id) == len("task_") + 32
    done = await client.wait(job)
    # The status body is {"code": "success", "data": TaskDto} with a numeric row id.
    envelope = done.raw
    assert envelope["code"] == "success"
    dto = envelope["data"]
    assert isinstance(dto, dict)
    assert isinstance(dto["id"], int)
    assert (dto["task_id"], dto["status"], dto["progress"]) == (job.id, "SUCCESS", "100%")
    assert done.id == job.id
    assert done.state is JobState.SUCCEEDED
    assert done.video_url == dto["result_url"] == gateway.video_url(job.id)
    path = await client.download(done, tmp_path / "clip.mp4")
    assert path.read_bytes() == gateway.video_content(job.id)
    statuses = {r.path for r in gateway.requests if r.kind == "status"}
    assert statuses == {f"/v1/video/generations/{job.id}"}


async def test_new_api_content_that_lags_behind_success_is_retried(
    make_client: ClientFactory, gateway: FakeGateway, tmp_path: Path
) -> None:
    gateway.set_config(profile="new-api", content_lag=30.0)
    client = make_client()
    job = await client.wait(await client.submit(prompt="astronaut", model="sora-2"))
    assert job.state is JobState.SUCCEEDED
    # The relay answers Sora's status with the upstream's body: no URL, so /content.
    assert job.video_url is None
    path = await client.download(job, tmp_path / "clip.mp4")
    assert path.read_bytes() == gateway.video_content(job.id)
    answers = [r.status for r in gateway.requests if r.kind == "content"]
    assert answers[0] == 400  # "Task is not completed yet, current status: IN_PROGRESS"
    assert answers[-1] == 200
    assert set(answers[:-1]) == {400}


async def test_not_ready_past_the_window_is_an_error(
    make_client: ClientFactory, gateway: FakeGateway, tmp_path: Path, clock: ManualClock
) -> None:
    gateway.set_config(profile="new-api", content_lag=10_000.0)
    client = make_client(
        retry_policy=RetryPolicy(base_delay=0.5, max_delay=4.0, not_ready_window=20.0)
    )
    job = await client.wait(await client.submit(prompt="astronaut", model="sora-2"))
    started = clock.monotonic()
    with pytest.raises(InvalidRequestError, match="not completed yet"):
        await client.download(job, tmp_path / "clip.mp4")
    assert 20.0 <= clock.monotonic() - started < 25.0
    assert len([r for r in gateway.requests if r.kind == "content"]) > 2
    assert not list(tmp_path.iterdir())  # no file, no .part


@pytest.mark.parametrize("model", ["kling-v1", "sora-2"])
async def test_new_api_unknown_task_is_not_found(
    make_client: ClientFactory, gateway: FakeGateway, model: str
) -> None:
    gateway.set_config(profile="new-api")
    client = make_client()
    with pytest.raises(NotFoundError) as caught:
        await client.get("task_doesnotexist", model=model)
    assert (caught.value.status, caught.value.code) == (400, "task_not_exist")
    # Final, not retried: one status request.
    assert gateway.stats.requests["status"] == 1


async def test_new_api_upstream_refusal_is_unwrapped(
    make_client: ClientFactory, gateway: FakeGateway
) -> None:
    gateway.set_config(profile="new-api")
    client = make_client()
    with pytest.raises(ContentPolicyError) as caught:
        await client.submit(prompt="[moderate] something", model="kling-v1")
    assert caught.value.message == "Your request was rejected by the content policy."
    assert caught.value.code == "content_policy_violation"
    assert gateway.stats.creates == 0


# -- LiteLLM proxy ------------------------------------------------------------------------


async def test_litellm_status_ids_are_kept_in_raw_never_used(
    make_client: ClientFactory, gateway: FakeGateway, tmp_path: Path
) -> None:
    gateway.set_config(profile="litellm")
    client = make_client()
    job = await client.submit(prompt="astronaut", model="sora-2")
    assert litellm_decode(job.id) == ("sora-2", gateway.tasks[job.id].upstream_id)
    done = await client.wait(job)
    renamed = done.raw["id"]
    assert isinstance(renamed, str)
    assert renamed != job.id
    assert litellm_decode(renamed) == ("", gateway.tasks[job.id].upstream_id)
    assert done.id == job.id
    path = await client.download(done, tmp_path)
    assert path.read_bytes() == gateway.video_content(job.id)
    used = {r.path for r in gateway.requests if r.kind in ("status", "content")}
    assert used == {f"/v1/videos/{job.id}", f"/v1/videos/{job.id}/content"}
    assert all(r.status == 200 for r in gateway.requests)


async def test_videos_are_asked_for_unencoded(
    make_client: ClientFactory, gateway: FakeGateway, tmp_path: Path
) -> None:
    gateway.set_config(profile="litellm")
    client = make_client()
    job = await client.wait(await client.submit(prompt="astronaut", model="sora-2"))
    await client.download(job, tmp_path / "clip.mp4")
    (content,) = [r for r in gateway.requests if r.kind == "content"]
    assert content.headers["Accept-Encoding"] == "identity"


@pytest.mark.parametrize("model", ["sora-2", "kling-v1"])
async def test_a_server_that_gzips_anyway_gives_the_right_bytes(
    make_client: ClientFactory, gateway: FakeGateway, tmp_path: Path, model: str
) -> None:
    # Cut the encoded body once: the retry must start again from byte 0, since
    # a Range on the encoded body means nothing for the decoded bytes we have.
    gateway.set_config(content_encoding="gzip", drop_download_after=1024, drop_downloads=1)
    client = make_client()
    job = await client.wait(await client.submit(prompt="astronaut", model=model))
    path = await client.download(job, tmp_path / "clip.mp4")
    assert path.read_bytes() == gateway.video_content(job.id)
    downloads = [r for r in gateway.requests if r.kind in ("content", "cdn")]
    assert len(downloads) == 2
    assert "Range" not in downloads[1].headers
    assert gateway.stats.dropped_connections == 1
