"""generate_many: one poller, bounded concurrency, every outcome, clean closing.

These run in scaled real time (a "30 s" job takes 150 ms) because they measure
concurrency the way the server sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Literal

import anyio
import anyio.lowlevel
import attrs
import pytest

from asyncvideo import (
    Client,
    DownloadedEvent,
    Event,
    FailedEvent,
    Job,
    JobStore,
    JournalEntry,
    Limits,
    Outcome,
    PollPolicy,
    RetryPolicy,
    StateChangedEvent,
    SubmittedEvent,
    VideoRequest,
    errors,
)
from asyncvideo._store import fingerprint
from asyncvideo.testing import FakeGateway

pytestmark = pytest.mark.anyio

SCALE = 0.005


@pytest.fixture
async def fast_gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(time_scale=SCALE, durations=(20.0, 40.0), video_bytes=16 * 1024) as gw:
        yield gw


def scaled_client(gw: FakeGateway, **options: object) -> Client:
    return Client(
        api_key=str(options.pop("api_key", gw.api_key)),
        base_url=gw.url,
        poll_policy=PollPolicy().scaled(SCALE),
        retry_policy=RetryPolicy().scaled(SCALE),
        seed=3,
        **options,  # type: ignore[arg-type]
    )


def prompts(n: int, *, fail_every: int = 0, model: str = "sora-2") -> Iterator[VideoRequest]:
    for i in range(n):
        marker = "[fail] " if fail_every and i % fail_every == 0 else ""
        yield VideoRequest(prompt=f"{marker}clip {i}", model=model)


def client_tasks() -> set[asyncio.Task[object]]:
    """Tasks on the loop except the gateway's own connection handlers and this test."""
    return {
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and "RequestHandler" not in getattr(task.get_coro(), "__qualname__", "")
    }


async def collect(client: Client, requests: object, out: Path, **kw: object) -> list[Outcome]:
    return [
        outcome
        async for outcome in client.generate_many(requests, output_dir=out, **kw)  # type: ignore[arg-type]
    ]


async def test_mixed_batch_yields_every_outcome(fast_gateway: FakeGateway, tmp_path: Path) -> None:
    requests: list[object] = list(prompts(30, fail_every=4))
    requests.insert(7, VideoRequest(prompt="bad", model="no-such-model"))
    requests.append({"prompt": "from a dict", "model": "kling-v1"})
    events: list[Event] = []
    async with scaled_client(fast_gateway) as client:
        outcomes = await collect(client, requests, tmp_path, on_event=events.append)
    assert sorted(o.index for o in outcomes) == list(range(len(requests)))
    by_index = {o.index: o for o in outcomes}
    assert isinstance(by_index[7].error, errors.ValidationError)
    failed = [o for o in outcomes if isinstance(o.error, errors.JobFailedError)]
    assert len(failed) == 8  # clips 0, 4, ..., 28
    succeeded = [o for o in outcomes if o.ok]
    assert len(succeeded) == len(requests) - 9
    for outcome in succeeded:
        assert outcome.path is not None
        assert outcome.job is not None
        assert outcome.path.parent == tmp_path
        assert outcome.path.read_bytes() == fast_gateway.video_content(outcome.job.id)
    assert not list(tmp_path.glob("*.part"))
    assert fast_gateway.stats.creates == len(requests) - 1  # the invalid one sent nothing
    kinds = {type(e) for e in events}
    assert {SubmittedEvent, StateChangedEvent, DownloadedEvent, FailedEvent} <= kinds
    downloaded = {e.index for e in events if isinstance(e, DownloadedEvent)}
    assert downloaded == {o.index for o in succeeded}
    assert {e.index for e in events if isinstance(e, FailedEvent)} == {
        o.index for o in outcomes if o.error
    }


async def test_limits_are_never_exceeded(fast_gateway: FakeGateway, tmp_path: Path) -> None:
    limits = Limits(max_active_jobs=12, max_creates=3, max_polls=4, max_downloads=2)
    async with scaled_client(fast_gateway, limits=limits) as client:
        outcomes = await collect(client, prompts(60), tmp_path)
    assert all(o.ok for o in outcomes)
    seen = fast_gateway.stats.max_in_flight
    assert 1 <= seen["create"] <= 3
    assert 1 <= seen["status"] <= 4
    assert 1 <= seen["cdn"] + seen["content"] <= 2 + 2
    assert seen["cdn"] <= 2
    assert 1 < max(fast_gateway.stats.max_active_tasks.values()) <= 12


async def test_a_429_storm_slows_the_client_and_the_batch_completes(
    fast_gateway: FakeGateway, tmp_path: Path
) -> None:
    fast_gateway.set_config(rate_limit=150.0, retry_after="none")
    async with scaled_client(fast_gateway, limits=Limits(max_active_jobs=80)) as client:
        outcomes = await collect(client, prompts(120), tmp_path)
        limiter = client._connection.rate_limiter("sora")
        assert limiter.throttle_count > 0
        assert limiter.rate is not None  # paced now, where it started unpaced
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if o.error][:3]
    stats = fast_gateway.stats
    assert stats.rate_limited > 0
    assert stats.creates == 120
    # Without backing off, 80 jobs polling every 25 ms would draw thousands of 429s.
    assert stats.rate_limited < stats.total_requests / 3


async def test_retry_after_is_honoured_in_a_storm(
    fast_gateway: FakeGateway, tmp_path: Path
) -> None:
    fast_gateway.set_config(rate_limit=200.0, retry_after="ms")
    # The rate limit alone may never trip on a loaded machine: some 429s are certain.
    # Polls come after the creates' burst, when the client's rate estimate is high;
    # each 429 holds the provider for the capped Retry-After (0.6 s of a 3 s deadline).
    fast_gateway.script_failures("status", [429, 429])
    # A 429 halves the client's rate for the provider, which then grows back over seconds:
    # the jobs get ten times the usual (scaled) deadline to come through the storm.
    async with Client(
        api_key=fast_gateway.api_key,
        base_url=fast_gateway.url,
        poll_policy=attrs.evolve(PollPolicy().scaled(SCALE), deadline=600 * SCALE * 10),
        retry_policy=RetryPolicy().scaled(SCALE),
        limits=Limits(max_active_jobs=50),
        seed=3,
    ) as client:
        outcomes = await collect(client, prompts(60), tmp_path)
    assert [o.error for o in outcomes if not o.ok] == []
    assert fast_gateway.stats.rate_limited >= 2
    assert fast_gateway.stats.creates == 60


async def test_bad_key_stops_the_batch(fast_gateway: FakeGateway, tmp_path: Path) -> None:
    async with scaled_client(fast_gateway, api_key="sk-not-it") as client:
        with pytest.raises(errors.AuthenticationError) as caught:
            await collect(client, prompts(500), tmp_path)
    assert "sk-not-it" not in str(caught.value)
    assert fast_gateway.stats.requests["create"] <= client.limits.max_creates + 1


async def test_quota_running_out_stops_the_batch_and_names_the_live_tasks(
    fast_gateway: FakeGateway, tmp_path: Path
) -> None:
    fast_gateway.set_config(quota=5, durations=(200.0, 200.0))
    async with scaled_client(fast_gateway) as client:
        with pytest.raises(errors.InsufficientQuotaError) as caught:
            await collect(client, prompts(50), tmp_path)
    notes = " ".join(getattr(caught.value, "__notes__", []))
    assert all(task_id in notes for task_id in fast_gateway.tasks)


async def test_requests_are_read_lazily(fast_gateway: FakeGateway, tmp_path: Path) -> None:
    pulled = 0

    def counting() -> Iterator[VideoRequest]:
        nonlocal pulled
        for request in prompts(1000):
            pulled += 1
            yield request

    async with scaled_client(fast_gateway, limits=Limits(max_active_jobs=5)) as client:
        async for _ in client.generate_many(counting(), output_dir=tmp_path):
            break
    # Five in flight, a few more as the first finish: nowhere near the thousand.
    assert pulled < 20


async def test_async_iterable_input(fast_gateway: FakeGateway, tmp_path: Path) -> None:
    async def source() -> AsyncIterator[VideoRequest]:
        for request in prompts(5, model="viduq1"):
            await anyio.lowlevel.checkpoint()
            yield request

    async with scaled_client(fast_gateway) as client:
        outcomes = await collect(client, source(), tmp_path)
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3, 4]
    assert all(o.ok for o in outcomes)


async def test_cancelling_leaves_no_tasks_and_no_half_files(
    fast_gateway: FakeGateway, tmp_path: Path
) -> None:
    fast_gateway.set_config(video_bytes=2 * 1024 * 1024)
    received: list[Outcome] = []
    before = client_tasks()
    async with scaled_client(fast_gateway) as client:
        with anyio.CancelScope() as scope:
            async for outcome in client.generate_many(prompts(200), output_dir=tmp_path):
                received.append(outcome)
                if len(received) == 3:
                    scope.cancel()  # mid-batch: creates, polls and downloads in flight
        assert scope.cancelled_caught
        assert 3 <= len(received) < 200
        await anyio.sleep(0.05)
        assert client_tasks() - before == set()
        served_creates = fast_gateway.stats.creates
        await anyio.sleep(0.2)
        assert fast_gateway.stats.creates == served_creates  # nothing runs on in the background
    assert not list(tmp_path.glob("*.part"))
    for video in tmp_path.glob("*.mp4"):
        data = video.read_bytes()
        assert len(data) == 2 * 1024 * 1024
        assert data[4:8] == b"ftyp"


async def test_breaking_out_of_the_loop_stops_the_batch(
    fast_gateway: FakeGateway, tmp_path: Path
) -> None:
    from contextlib import aclosing

    async with scaled_client(fast_gateway) as client:
        async with aclosing(client.generate_many(prompts(200), output_dir=tmp_path)) as outcomes:
            async for _ in outcomes:
                break
        creates = fast_gateway.stats.creates
        await anyio.sleep(0.2)
        assert fast_gateway.stats.creates == creates
        assert creates < 200


async def test_a_thousand_jobs(fast_gateway: FakeGateway, tmp_path: Path) -> None:
    fast_gateway.set_config(video_bytes=4096)
    async with scaled_client(fast_gateway, limits=Limits(max_active_jobs=250)) as client:
        outcomes = await collect(client, prompts(1000), tmp_path)
    assert len(outcomes) == 1000
    assert all(o.ok for o in outcomes)
    assert len(list(tmp_path.glob("*.mp4"))) == 1000
    assert fast_gateway.stats.creates == 1000


async def test_closing_the_client_stops_its_batch_loudly(
    fast_gateway: FakeGateway, tmp_path: Path
) -> None:
    client = scaled_client(fast_gateway)
    outcomes = client.generate_many(prompts(100), output_dir=tmp_path)
    first = await outcomes.__anext__()
    assert first.ok
    await client.aclose()
    with pytest.raises(errors.AsyncVideoError, match="client was closed"):
        async for _ in outcomes:
            pass
    assert not list(tmp_path.glob("*.part"))


async def test_leaving_async_with_cancels_the_rest_and_waits(
    fast_gateway: FakeGateway, tmp_path: Path
) -> None:
    fast_gateway.set_config(video_bytes=512 * 1024)
    before = client_tasks()
    async with scaled_client(fast_gateway) as client:
        async with client.generate_many(prompts(200), output_dir=tmp_path) as outcomes:
            async for first in outcomes:
                assert first.ok
                break
        # Closed on leaving the block, not later: no create is still going out, no half
        # file carries a final name, and the polls of its jobs are being called off.
        for _ in range(5):
            await anyio.lowlevel.checkpoint()  # no time passes: just let them unwind
        assert client_tasks() - before == set()
        creates = fast_gateway.stats.creates
        assert creates == fast_gateway.stats.create_requests  # every create sent was answered
        await anyio.sleep(0.1)
        assert fast_gateway.stats.creates == creates
        assert creates < 200
        assert len(client._poller) == 0  # the batch's jobs left the client's poller
    assert not list(tmp_path.glob("*.part"))
    for video in tmp_path.glob("*.mp4"):
        assert video.read_bytes()[4:8] == b"ftyp"


async def test_a_create_in_flight_is_seen_through_when_the_batch_closes(
    fast_gateway: FakeGateway, tmp_path: Path
) -> None:
    fast_gateway.set_config(latency=0.05)  # every create is in flight when we leave
    async with scaled_client(fast_gateway, limits=Limits(max_creates=4)) as client:
        batch = client.generate_many(prompts(50), output_dir=tmp_path)
        async with batch:
            with anyio.move_on_after(0.02):
                await batch.__anext__()
        # Those already sent got their answers (the task ids are known to the gateway
        # and none is left half-sent); nothing new was sent after leaving.
        assert fast_gateway.stats.create_requests == fast_gateway.stats.creates > 0
        creates = fast_gateway.stats.creates
        await anyio.sleep(0.1)
        assert fast_gateway.stats.creates == creates <= 4


async def test_a_break_out_of_a_plain_loop_stops_the_batch(
    fast_gateway: FakeGateway, tmp_path: Path
) -> None:
    async with scaled_client(fast_gateway, limits=Limits(max_active_jobs=20)) as client:
        async for _ in client.generate_many(prompts(500), output_dir=tmp_path):
            break
        await anyio.sleep(0.05)  # the dropped handle cancelled the work
        creates = fast_gateway.stats.creates
        await anyio.sleep(0.2)
        assert fast_gateway.stats.creates == creates < 500
        assert len(client._poller) == 0


async def test_the_handle_iterates_to_the_end_inside_async_with(
    fast_gateway: FakeGateway, tmp_path: Path
) -> None:
    async with scaled_client(fast_gateway) as client:
        async with client.generate_many(prompts(5), output_dir=tmp_path) as outcomes:
            got = [outcome async for outcome in outcomes]
        assert sorted(o.index for o in got) == list(range(5))
        assert [o async for o in outcomes] == []  # a finished batch stays finished


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, errors.AuthenticationError),
        (402, errors.InsufficientQuotaError),
        (403, errors.PermissionDeniedError),
    ],
)
@pytest.mark.parametrize("kind", ["create", "status"])
async def test_an_error_that_fails_every_job_stops_the_batch(
    fast_gateway: FakeGateway,
    tmp_path: Path,
    kind: Literal["create", "status"],
    status: int,
    error: type[errors.APIError],
) -> None:
    assert error.stops_batch
    fast_gateway.set_config(durations=(200.0, 200.0))
    received: list[Outcome] = []
    async with scaled_client(fast_gateway, limits=Limits(max_active_jobs=10)) as client:
        fast_gateway.script_failures(kind, [status])
        with pytest.raises(error):
            await consume(client.generate_many(prompts(100), output_dir=tmp_path), received)
        creates = fast_gateway.stats.creates
        await anyio.sleep(0.1)
        assert fast_gateway.stats.creates == creates <= 10 + client.limits.max_creates
    assert received == []


async def test_other_errors_are_one_outcome_each(fast_gateway: FakeGateway, tmp_path: Path) -> None:
    assert not errors.NotFoundError.stops_batch
    assert not errors.ServerError.stops_batch
    # A CDN's 403 is an expired signature, not a bad key: that clip's error only.
    async with scaled_client(fast_gateway) as client:
        fast_gateway.script_failures("cdn", [403])
        outcomes = await collect(client, prompts(10, model="kling-v1"), tmp_path)
    assert len(outcomes) == 10
    failed = [o for o in outcomes if o.error is not None]
    assert [type(o.error) for o in failed] == [errors.PermissionDeniedError]


async def consume(batch: AsyncIterator[Outcome], into: list[Outcome]) -> None:
    async for outcome in batch:
        into.append(outcome)  # noqa: PERF401 - must see those before a raise


class MemoryStore:
    """A JobStore in a dict: the batch needs nothing more than the protocol."""

    def __init__(self) -> None:
        self.rows: dict[int, JournalEntry] = {}

    async def get(self, index: int) -> JournalEntry | None:
        return self.rows.get(index)

    async def record_intent(self, index: int, request: VideoRequest, key: str) -> None:
        self.rows[index] = JournalEntry(
            index, fingerprint(request), key, request.model, None, None, None, None, None
        )

    async def record_job(self, index: int, job: Job) -> None:
        row = self.rows[index]
        self.rows[index] = attrs.evolve(
            row, task_id=job.id, provider=job.provider, state=job.state.value
        )

    async def record_outcome(
        self, index: int, *, state: str | None, path: Path | None, error: BaseException | None
    ) -> None:
        row = self.rows[index]
        self.rows[index] = attrs.evolve(
            row,
            state=state or row.state,
            path=str(path) if path else None,
            error=repr(error) if error else None,
        )


async def test_any_job_store_resumes_a_batch(fast_gateway: FakeGateway, tmp_path: Path) -> None:
    store: JobStore = MemoryStore()
    fast_gateway.set_config(durations=(40.0, 80.0))
    async with scaled_client(fast_gateway, limits=Limits(max_active_jobs=8)) as client:
        async with client.generate_many(prompts(20), output_dir=tmp_path, store=store) as first:
            async for _ in first:
                break
        second = await collect(client, prompts(20), tmp_path, store=store)
    assert sorted(o.index for o in second) == list(range(20))
    assert all(o.ok for o in second)
    assert fast_gateway.stats.creates == 20  # each created once across both runs


async def test_journal_and_store_together_are_refused(
    fast_gateway: FakeGateway, tmp_path: Path
) -> None:
    async with scaled_client(fast_gateway) as client:
        with pytest.raises(errors.ValidationError, match="not both"):
            client.generate_many(
                prompts(1), output_dir=tmp_path, journal=tmp_path / "j.sqlite", store=MemoryStore()
            )
    assert fast_gateway.stats.total_requests == 0
