"""The SDK through a real gateway: the LiteLLM proxy in front of a FakeGateway.

LiteLLM rewrites what passes through it: it wraps the upstream id into its own
(``video_`` + base64 of provider, model and upstream id), re-wraps it without
the model on every status answer, and gzips the video download when the client
accepts gzip. Videos must still arrive byte for byte as the upstream served them.
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from pathlib import Path

import aiohttp
import anyio
import openai
import pytest

from asyncvideo import Client, JobState, PollPolicy, VideoRequest
from asyncvideo.testing import FakeGateway
from asyncvideo.testing._relays import litellm_decode, litellm_id

from .conftest import LiteLLMProxy, upstream_id

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

#: Real time: first poll after 0.125 s, then every 0.25 s; 30 s deadline.
FAST_POLL = PollPolicy().scaled(0.05)


def client_for(proxy: LiteLLMProxy) -> Client:
    return Client(api_key=proxy.master_key, base_url=proxy.url, poll_policy=FAST_POLL, seed=1)


async def test_generate_through_litellm_writes_the_upstream_bytes(
    litellm_proxy: LiteLLMProxy, upstream: FakeGateway, tmp_path: Path
) -> None:
    before = set(upstream.tasks)
    async with client_for(litellm_proxy) as client:
        path = await client.generate(
            prompt="a red fox in snow", model="sora-2", output=tmp_path / "x.mp4"
        )
    created = set(upstream.tasks) - before
    assert len(created) == 1, f"upstream tasks created: {sorted(created)}"
    (task_id,) = created
    assert path.read_bytes() == upstream.video_content(task_id)


async def test_generate_many_through_litellm(
    litellm_proxy: LiteLLMProxy, upstream: FakeGateway, tmp_path: Path
) -> None:
    upstream.reset_stats()
    requests = [VideoRequest(prompt=f"clip {i}: waves at dusk", model="sora-2") for i in range(20)]
    async with client_for(litellm_proxy) as client:
        batch = client.generate_many(requests, output_dir=tmp_path / "videos")
        async with aclosing(batch):
            outcomes = [outcome async for outcome in batch]

    assert sorted(outcome.index for outcome in outcomes) == list(range(20))
    tasks: set[str] = set()
    for outcome in outcomes:
        assert outcome.error is None, f"clip {outcome.index}: {outcome.error!r}"
        assert outcome.job is not None
        assert outcome.job.state is JobState.SUCCEEDED
        assert outcome.path is not None
        task_id = upstream_id(outcome.job.id)
        assert task_id in upstream.tasks, f"clip {outcome.index}: job id {outcome.job.id!r}"
        # The id the create answered with, not the re-encoded one of the status answers.
        assert litellm_decode(outcome.job.id) == ("sora-2", task_id)
        assert outcome.job.raw["id"] != outcome.job.id
        assert outcome.path.read_bytes() == upstream.video_content(task_id)
        tasks.add(task_id)
    assert len(tasks) == 20
    assert upstream.stats.creates == 20


async def test_a_video_streams_through_litellm_as_the_upstream_served_it(
    litellm_proxy: LiteLLMProxy, upstream: FakeGateway
) -> None:
    async with client_for(litellm_proxy) as client:
        job = await client.wait(await client.submit(prompt="a lantern", model="sora-2"))
        async with client.open_video(job) as stream:
            chunks = [chunk async for chunk in stream]
    video = upstream.video_content(upstream_id(job.id))
    assert b"".join(chunks) == video
    assert stream.content_length == len(video)  # asked for identity, so not gzipped


async def test_master_key_is_never_logged(
    litellm_proxy: LiteLLMProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with client_for(litellm_proxy) as client:
        job = await client.submit(prompt="a quiet harbour", model="sora-2")
        await client.refresh(job)
        await client.get(job.id, model="sora-2")
    assert caplog.records, "expected the SDK to log the submit"
    for record in caplog.records:
        text = f"{record.getMessage()} {record.exc_text or ''}"
        assert litellm_proxy.master_key not in text, record


# openai >= 2.x warns on every videos call that OpenAI will retire its Sora API.
@pytest.mark.filterwarnings("ignore:The Sora API is scheduled:DeprecationWarning")
async def test_openai_package_through_litellm_gets_the_upstream_bytes(
    litellm_proxy: LiteLLMProxy, upstream: FakeGateway
) -> None:
    """Proves the harness: the reference client works through this proxy today."""
    async with openai.AsyncOpenAI(
        base_url=f"{litellm_proxy.url}/v1", api_key=litellm_proxy.master_key, max_retries=0
    ) as oai:
        created = await oai.videos.create(model="sora-2", prompt="a lighthouse at night")
        # openai's poll() keeps asking with the id it was given: the create id.
        done = await oai.videos.poll(created.id, poll_interval_ms=100)
        assert done.status == "completed", done
        content = await oai.videos.download_content(created.id)
        data = content.read()

    task_id = upstream_id(created.id)
    assert task_id in upstream.tasks
    # LiteLLM's status answer names the same upstream task (though it may spell the id anew).
    assert upstream_id(done.id) == task_id
    assert data == upstream.video_content(task_id)


async def test_the_simulators_litellm_profile_matches_the_real_proxy(
    litellm_proxy: LiteLLMProxy, upstream: FakeGateway
) -> None:
    """What FakeGateway(profile="litellm") sends is what the real proxy sends."""
    auth = {"Authorization": f"Bearer {litellm_proxy.master_key}"}
    async with (
        FakeGateway(profile="litellm", durations=0.0) as fake,
        aiohttp.ClientSession() as http,
    ):
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("prompt", "a paper boat")
        form.add_field("model", "sora-2")
        async with http.post(f"{litellm_proxy.url}/v1/videos", data=form, headers=auth) as answer:
            assert answer.status == 200
            created = await answer.json()
        task_id = upstream_id(created["id"])
        assert created["id"] == litellm_id(task_id, "sora-2")
        for _ in range(100):
            async with http.get(
                f"{litellm_proxy.url}/v1/videos/{created['id']}", headers=auth
            ) as answer:
                status = await answer.json()
            if status["status"] == "completed":
                break
            await anyio.sleep(0.1)
        assert status["id"] == litellm_id(task_id, "")
        content_url = f"{litellm_proxy.url}/v1/videos/{created['id']}/content"
        gzip_please = {**auth, "Accept-Encoding": "gzip"}
        async with http.get(content_url, headers=gzip_please) as answer:
            real_encoding = answer.headers.get("Content-Encoding")
            assert await answer.read() == upstream.video_content(task_id)
        async with http.get(
            f"{litellm_proxy.url}/v1/videos/{status['id']}", headers=auth
        ) as answer:
            real_poisoned = answer.status

        fake_auth = {"Authorization": f"Bearer {fake.api_key}"}
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("prompt", "a paper boat")
        form.add_field("model", "sora-2")
        async with http.post(f"{fake.url}/v1/videos", data=form, headers=fake_auth) as answer:
            fake_created = await answer.json()
        async with http.get(
            f"{fake.url}/v1/videos/{fake_created['id']}", headers=fake_auth
        ) as answer:
            fake_status = await answer.json()
        async with http.get(
            f"{fake.url}/v1/videos/{fake_created['id']}/content",
            headers={**fake_auth, "Accept-Encoding": "gzip"},
        ) as answer:
            fake_encoding = answer.headers.get("Content-Encoding")
        async with http.get(
            f"{fake.url}/v1/videos/{fake_status['id']}", headers=fake_auth
        ) as answer:
            fake_poisoned = answer.status

    assert sorted(fake_created) == sorted(created)
    assert sorted(fake_status) == sorted(status)
    assert fake_encoding == real_encoding == "gzip"
    assert fake_poisoned == real_poisoned == 500
