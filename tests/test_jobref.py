"""job.ref: one string that re-attaches to a task, against the FakeGateway over HTTP."""

from __future__ import annotations

import base64
import json

import pytest

from asyncvideo import Client, Job, JobState
from asyncvideo._jobref import MAX_REF_LENGTH, make_ref, read_ref
from asyncvideo.errors import ValidationError
from asyncvideo.testing import FakeGateway

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("model", ["sora-2", "kling-v1", "viduq1", "wan2.5-t2v-preview"])
async def test_get_by_ref_re_attaches_without_the_model(
    client: Client, gateway: FakeGateway, model: str
) -> None:
    submitted = await client.submit(prompt="a cat", model=model)
    again = await client.get(submitted.ref)
    assert (again.id, again.model, again.provider) == (
        submitted.id,
        model,
        submitted.provider,
    )
    assert gateway.stats.creates == 1


def test_a_ref_is_url_safe_and_round_trips_any_task_id() -> None:
    task_id = "任务/..?&=#%20 " * 3
    ref = make_ref("kling", "kling-v1", task_id, "generations")
    assert ref.startswith("av1.")
    assert set(ref[4:]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    parts = read_ref(ref)
    assert (parts.provider, parts.model, parts.task_id, parts.wire) == (
        "kling",
        "kling-v1",
        task_id,
        "generations",
    )


def test_a_task_id_with_a_lone_surrogate_still_has_a_ref() -> None:
    # JSON from a gateway may escape one ("\\ud800"); the job's dict form carries its ref.
    job = Job(id="t\ud800x", model="kling-v1", provider="kling", state=JobState.QUEUED)
    assert read_ref(job.ref).task_id == "t\ud800x"
    assert job.to_dict()["ref"] == job.ref


def test_job_ref_names_the_provider_wire() -> None:
    job = Job(id="video_1", model="sora-2", provider="sora", state=JobState.QUEUED)
    assert read_ref(job.ref).wire == "openai"
    assert read_ref(job.ref).task_id == "video_1"


def _encoded(payload: object) -> str:
    text = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return "av1." + text


@pytest.mark.parametrize(
    "ref",
    [
        "av1.!!!",
        "av1." + "A" * MAX_REF_LENGTH,
        _encoded({"provider": "sora"}),
        _encoded(["sora", "sora-2", "video_1"]),
        _encoded(["sora", "sora-2", "", "openai"]),
        _encoded(["sora", "sora-2", 7, "openai"]),
        "av1." + base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_damaged_ref_is_a_validation_error(ref: str) -> None:
    with pytest.raises(ValidationError) as caught:
        read_ref(ref)
    assert caught.value.field == "ref"


async def test_get_refuses_a_ref_with_a_model_or_an_unknown_provider(
    client: Client, gateway: FakeGateway
) -> None:
    job = Job(id="video_1", model="sora-2", provider="sora", state=JobState.QUEUED)
    with pytest.raises(ValidationError, match="pass it alone"):
        await client.get(job.ref, model="sora-2")
    with pytest.raises(ValidationError, match="does not know"):
        await client.get(make_ref("sora", "sora-2", "video_1", "generations"))
    with pytest.raises(ValidationError, match="does not know"):
        await client.get(make_ref("acme", "acme-1", "video_1", "openai"))
    with pytest.raises(ValidationError, match="model="):
        await client.get("video_1")
    assert sum(gateway.stats.requests.values()) == 0
