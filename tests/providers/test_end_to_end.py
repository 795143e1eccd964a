"""Every documented model, in both gateway families: submit -> wait -> download."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from asyncvideo import KNOWN_MODELS, JobState, VideoRequest
from asyncvideo.testing import FakeGateway

from ..conftest import PNG, ClientFactory

pytestmark = pytest.mark.anyio

IMG = "https://img.example/first.png"
TAIL = "https://img.example/last.png"

#: A request each model can take, using the inputs that model is for.
REQUESTS: dict[str, VideoRequest] = {
    "sora-2": VideoRequest(prompt="astronaut", model="sora-2", seconds=4, size="1280x720"),
    "wan2.5-t2v-preview": VideoRequest(
        prompt="kitten", model="wan2.5-t2v-preview", seconds=5, size="1920x1080", audio=True
    ),
    "wan2.5-i2v-preview": VideoRequest(
        prompt="animate", model="wan2.5-i2v-preview", image=IMG, resolution="720P"
    ),
    "wan2.2-i2v-flash": VideoRequest(prompt="animate", model="wan2.2-i2v-flash", image=IMG),
    "wan2.2-i2v-plus": VideoRequest(
        prompt="animate", model="wan2.2-i2v-plus", image=IMG, watermark=False
    ),
    "wanx2.1-i2v-plus": VideoRequest(prompt="animate", model="wanx2.1-i2v-plus", image=IMG),
    "wanx2.1-i2v-turbo": VideoRequest(
        prompt="animate", model="wanx2.1-i2v-turbo", image=IMG, prompt_extend=False
    ),
    "wan2.2-kf2v-flash": VideoRequest(
        prompt="morph", model="wan2.2-kf2v-flash", image=IMG, last_frame=TAIL, seconds=4
    ),
    "kling-v1": VideoRequest(
        prompt="moonwalk",
        model="kling-v1",
        seconds=5,
        size="1920x1080",
        image=IMG,
        last_frame=PNG,
        negative_prompt="blur",
        seed=20231234,
    ),
    "kling-v2-master": VideoRequest(prompt="moonwalk", model="kling-v2-master", image=PNG),
    "jimeng_vgfm_t2v_l20": VideoRequest(
        prompt="moonwalk", model="jimeng_vgfm_t2v_l20", size="1920x1080"
    ),
    "jimeng_vgfm_i2v_l20": VideoRequest(prompt="moonwalk", model="jimeng_vgfm_i2v_l20", image=IMG),
    "viduq1": VideoRequest(
        prompt="moonwalk",
        model="viduq1",
        seconds=5,
        size="1920x1080",
        resolution="1080p",
        image=IMG,
        extra={"movement_amplitude": "auto", "bgm": False},
    ),
}


def test_every_documented_model_has_a_case() -> None:
    assert set(REQUESTS) == set(KNOWN_MODELS)


PROFILES = ["seeds", "new-api", "litellm"]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("family", ["default", "toapis"])
@pytest.mark.parametrize("model", sorted(REQUESTS))
async def test_model_end_to_end(
    make_client: ClientFactory,
    gateway: FakeGateway,
    tmp_path: Path,
    model: str,
    family: str,
    profile: str,
) -> None:
    gateway.set_config(profile=profile)
    client = make_client(gateway=family)
    job = await client.submit(REQUESTS[model])
    assert job.provider == KNOWN_MODELS[model]
    done = await client.wait(job)
    assert done.state is JobState.SUCCEEDED, done
    path = await client.download(done, tmp_path / "clip.mp4")
    data = path.read_bytes()
    assert data[4:8] == b"ftyp"
    assert data == gateway.video_content(job.id)
    (create,) = [r for r in gateway.requests if r.kind == "create"]
    if family == "toapis":
        statuses = {r.path for r in gateway.requests if r.kind == "status"}
        assert statuses == {f"/v1/videos/generations/{job.id}"}
    assert_wire_fields(model, create.form, create.json, create.files)


def assert_wire_fields(
    model: str,
    form: dict[str, str],
    body: object,
    files: dict[str, tuple[str, str, bytes]],
) -> None:
    """The create carries the fields the gateway documents for this provider."""
    provider = KNOWN_MODELS[model]
    if provider == "sora":
        assert form == {
            "prompt": "astronaut",
            "model": "sora-2",
            "seconds": "4",
            "size": "1280x720",
        }
        return
    if provider == "wan":
        assert form["model"] == model
        metadata = json.loads(form.get("metadata", "{}"))
        if "kf2v" in model:
            assert (metadata["first_frame_url"], metadata["last_frame_url"]) == (IMG, TAIL)
        elif "i2v" in model:
            assert metadata["img_url"] == IMG
        else:
            assert form["size"] == "1920*1080"
            assert metadata["audio"] is True
        assert not files  # Wan takes no uploads
        return
    assert isinstance(body, dict)
    assert body["model"] == model
    metadata = body.get("metadata", {})
    if model == "kling-v1":
        assert (body["duration"], body["width"], body["height"]) == (5, 1920, 1080)
        assert body["image"] == IMG
        assert metadata["negative_prompt"] == "blur"
        assert metadata["seed"] == 20231234
        assert base64.b64decode(metadata["image_tail"]) == PNG
    elif model == "kling-v2-master":
        assert base64.b64decode(body["image"]) == PNG  # a local image goes as base64
    elif provider == "jimeng":
        assert metadata["req_key"] == model
        if "i2v" in model:
            assert metadata["image_urls"] == [IMG]
        else:
            assert metadata["aspect_ratio"] == "16:9"
    elif provider == "vidu":
        assert metadata == {
            "duration": 5,
            "resolution": "1080p",
            "movement_amplitude": "auto",
            "bgm": False,
        }


@pytest.mark.parametrize(
    "quirks",
    [
        {"status_case": "upper"},
        {"status_case": "mixed", "progress_style": "percent_string"},
        {"timestamps_ms": True, "create_status": 200},
        {"url_field": "result.url"},
        {"url_field": "metadata.url"},
        {"url_field": "video_url"},
        {"unknown_task_status": 400},
    ],
)
@pytest.mark.parametrize("model", ["kling-v1", "sora-2", "viduq1"])
@pytest.mark.parametrize("profile", PROFILES)
async def test_gateway_quirks(
    make_client: ClientFactory,
    gateway: FakeGateway,
    tmp_path: Path,
    model: str,
    quirks: dict[str, object],
    profile: str,
) -> None:
    gateway.set_config(profile=profile, **quirks)
    client = make_client()
    job = await client.wait(await client.submit(prompt="p", model=model))
    assert job.state is JobState.SUCCEEDED
    assert job.created_at is not None
    assert 2000 < job.created_at.year < 2100  # milliseconds were read as milliseconds
    path = await client.download(job, tmp_path / "q.mp4")
    assert path.read_bytes() == gateway.video_content(job.id)
    assert job.raw  # the last payload, as received
