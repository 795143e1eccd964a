"""The Sora-format client end to end, over real HTTP against the FakeGateway."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from asyncvideo import Client, JobState, ManualClock, VideoRequest, errors
from asyncvideo.testing import FakeGateway

from .conftest import PNG, ClientFactory

pytestmark = pytest.mark.anyio


def is_mp4(data: bytes) -> bool:
    return data[4:8] == b"ftyp"


async def test_submit_wait_download_sora(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    job = await client.submit(VideoRequest(prompt="an astronaut on the moon", model="sora-2"))
    assert job.state is JobState.QUEUED
    assert job.provider == "sora"
    assert job.created_at is not None
    done = await client.wait(job)
    assert done.state is JobState.SUCCEEDED
    assert done.progress == 100
    assert done.expires_at is not None
    path = await client.download(done, tmp_path / "clip.mp4")
    data = path.read_bytes()
    assert is_mp4(data)
    assert data == gateway.video_content(job.id)
    assert gateway.stats.creates == 1
    assert not list(tmp_path.glob("*.part"))


async def test_keyword_shorthand_and_defaults_reach_the_server(
    client: Client, gateway: FakeGateway
) -> None:
    await client.submit(prompt="a cat", seconds=8, size="1280x720")
    (sent,) = [r for r in gateway.requests if r.kind == "create"]
    assert sent.form["prompt"] == "a cat"
    assert sent.form["model"] == "sora-2"  # the SDK's default model
    assert (sent.form["seconds"], sent.form["size"]) == ("8", "1280x720")
    assert sent.headers.get("Idempotency-Key")
    # The gateway documents multipart/form-data, with or without a file.
    assert sent.headers["Content-Type"].startswith("multipart/form-data")


async def test_image_to_video_upload_reaches_the_server(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    await client.submit(prompt="the cat wakes", model="sora-2", image=image)
    await client.submit(prompt="the cat wakes", model="sora-2", image=PNG)
    uploads = [r.files["input_reference"] for r in gateway.requests if r.kind == "create"]
    assert [data for _, _, data in uploads] == [PNG, PNG]
    assert uploads[0][0] == "cat.png"
    assert uploads[0][1] == "image/png"


async def test_generate_is_one_call(client: Client, tmp_path: Path) -> None:
    path = await client.generate(prompt="waves", model="sora-2", output=tmp_path / "w.mp4")
    assert is_mp4(path.read_bytes())


async def test_generate_raises_job_failed_with_the_job(client: Client, tmp_path: Path) -> None:
    with pytest.raises(errors.JobFailedError) as caught:
        await client.generate(prompt="[fail] doomed", model="sora-2", output=tmp_path / "x.mp4")
    assert caught.value.job.state is JobState.FAILED
    assert caught.value.job.error is not None
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": ""},
        {"prompt": "x", "model": "no-such-model"},
        {"prompt": "x", "seconds": 0},
        {"prompt": "x", "seconds": -1},
        {"prompt": "x", "size": "1920 by 1080"},
        {"prompt": "x", "image": "/definitely/not/here.png"},
        {"prompt": "x", "seed": 3},  # sora takes no seed
        {"prompt": "x", "colour": "red"},  # not a field at all
    ],
)
async def test_bad_input_sends_nothing(
    # Any, not VideoRequestFields: these are checked at run time, "colour" included.
    client: Client,
    gateway: FakeGateway,
    fields: dict[str, Any],
) -> None:
    with pytest.raises(errors.ValidationError):
        await client.submit(**fields)
    assert gateway.stats.total_requests == 0


async def test_wrong_key_is_authentication_error_without_the_key(
    make_client: ClientFactory, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-wrong-secret-123456"
    client = make_client(api_key=secret)
    with caplog.at_level(logging.DEBUG), pytest.raises(errors.AuthenticationError) as caught:
        await client.submit(prompt="x")
    assert caught.value.status == 401
    assert secret not in str(caught.value)
    assert secret not in repr(caught.value)
    assert secret not in repr(client)
    assert secret not in caplog.text
    assert gateway.stats.requests["create"] == 1  # a 401 is final: no retry


async def test_unknown_task_is_not_found(client: Client, gateway: FakeGateway) -> None:
    with pytest.raises(errors.NotFoundError) as caught:
        await client.get("video_nope", model="sora-2")
    assert caught.value.task_id == "video_nope"
    gateway.set_config(unknown_task_status=400)
    with pytest.raises(errors.NotFoundError):
        await client.get("video_nope", model="sora-2")


async def test_quota_and_moderation_errors(client: Client, gateway: FakeGateway) -> None:
    with pytest.raises(errors.ContentPolicyError) as moderated:
        await client.submit(prompt="[moderate] something")
    assert moderated.value.status == 422
    gateway.set_config(quota=0)
    with pytest.raises(errors.InsufficientQuotaError):
        await client.submit(prompt="fine")


async def test_gateway_side_invalid_request(client: Client) -> None:
    with pytest.raises(errors.InvalidRequestError) as caught:
        await client.submit(prompt="x", model="totally-new-model", provider="sora")
    assert caught.value.status == 400


async def test_server_errors_on_status_are_retried_then_raised(
    client: Client, gateway: FakeGateway
) -> None:
    job = await client.submit(prompt="x")
    gateway.script_failures("status", [503, 502])
    assert (await client.refresh(job)).id == job.id  # two retries, then success
    gateway.script_failures("status", [500] * 10)
    with pytest.raises(errors.ServerError):
        await client.refresh(job)


async def test_html_error_page_from_a_proxy(client: Client, gateway: FakeGateway) -> None:
    gateway.set_config(html_errors=True)
    with pytest.raises(errors.NotFoundError) as caught:
        await client.get("video_missing", model="sora-2")
    assert "non-JSON" in caught.value.message


async def test_rate_limited_create_is_retried_once_accepted(
    client: Client, gateway: FakeGateway
) -> None:
    gateway.script_failures("create", [429])
    job = await client.submit(prompt="x")
    assert job.id
    assert gateway.stats.create_requests == 2
    assert gateway.stats.creates == 1


async def test_ambiguous_create_is_never_repeated(client: Client, gateway: FakeGateway) -> None:
    gateway.script_failures("create", [502], after_processing=True)
    request = VideoRequest(prompt="expensive", idempotency_key="key-123")
    with pytest.raises(errors.CreateOutcomeUnknown) as caught:
        await client.submit(request)
    assert caught.value.idempotency_key == "key-123"
    assert gateway.stats.create_requests == 1
    assert gateway.stats.creates == 1  # the gateway did make it
    # Resubmitting with the same key finds the same task instead of paying twice.
    job = await client.submit(request)
    assert gateway.stats.creates == 1
    assert gateway.stats.idempotency_replays == 1
    assert job.id in gateway.tasks


async def test_gateway_honouring_keys_retries_with_the_same_key(
    make_client: ClientFactory, gateway: FakeGateway
) -> None:
    import attrs

    from asyncvideo import GATEWAYS

    profile = attrs.evolve(GATEWAYS["default"], honours_idempotency_keys=True)
    client = make_client(gateway=profile)
    gateway.script_failures("create", [502], after_processing=True)
    job = await client.submit(prompt="x")
    keys = {r.headers["Idempotency-Key"] for r in gateway.requests if r.kind == "create"}
    assert len(keys) == 1
    assert gateway.stats.create_requests == 2
    assert gateway.stats.creates == 1
    assert job.id in gateway.tasks


async def test_deadline_raises_job_timeout_fast(
    make_client: ClientFactory, gateway: FakeGateway, clock: ManualClock
) -> None:
    gateway.set_config(durations=10_000.0)
    client = make_client()
    job = await client.submit(prompt="very long")
    with pytest.raises(errors.JobTimeoutError) as caught:
        await client.wait(job, timeout=600)
    assert caught.value.job.id == job.id
    assert not caught.value.job.is_terminal
    assert 598 <= clock.monotonic() <= 602
    # 2.5 s, every 5 s to 30, every 10 s to 120, every 30 s to 600: about 30 polls.
    assert 25 <= gateway.stats.requests["status"] <= 36


async def test_progress_never_goes_backwards(client: Client, clock: ManualClock) -> None:
    job = await client.submit(prompt="x")
    seen = [job.progress or 0]
    while not job.is_terminal:
        await clock.sleep(1.0)
        job = await client.refresh(job)
        seen.append(job.progress or 0)
    assert seen == sorted(seen)
    assert seen[-1] == 100
    assert len(set(seen)) > 3  # it really rose step by step


async def test_openai_vocabulary_maps_to_the_same_states(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    gateway.set_config(vocabulary="openai", status_case="upper", progress_style="percent_string")
    job = await client.submit(prompt="x")
    done = await client.wait(job)
    assert done.state is JobState.SUCCEEDED
    assert done.native_status is not None
    assert done.native_status.lower() == "completed"
    assert is_mp4((await client.download(done, tmp_path)).read_bytes())


async def test_client_reads_the_environment(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCVIDEO_API_KEY", gateway.api_key)
    monkeypatch.setenv("ASYNCVIDEO_BASE_URL", gateway.url)
    async with Client() as client:
        job = await client.submit(prompt="from env")
        assert job.id in gateway.tasks
    monkeypatch.delenv("ASYNCVIDEO_API_KEY")
    with pytest.raises(errors.ConfigurationError):
        Client()
