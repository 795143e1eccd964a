"""Per-job events: ``client.generate(on_event=...)`` and ``client.wait(on_event=...)``.

Against the FakeGateway over HTTP, on a ManualClock: the exact sequence a user's
handler sees for a success, a failed job and a timeout; async handlers; a
handler that raises.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from asyncvideo import (
    Client,
    DownloadedEvent,
    Event,
    FailedEvent,
    JobState,
    ManualClock,
    ProgressEvent,
    StateChangedEvent,
    SubmittedEvent,
    VideoRequest,
)
from asyncvideo.errors import JobFailedError, JobTimeoutError, ValidationError
from asyncvideo.testing import FakeGateway
from tests.conftest import ClientFactory

pytestmark = pytest.mark.anyio

Seen = tuple[str, JobState | None, int | None]


def seen(events: list[Event]) -> list[Seen]:
    """What a progress UI shows: the event's kind, the job's state and progress."""
    rows: list[Seen] = []
    for event in events:
        assert event.index == 0  # a single job is request 0
        job = event.job
        rows.append(
            (type(event).__name__, job.state if job else None, job.progress if job else None)
        )
    return rows


def assert_never_backwards(events: list[Event]) -> None:
    order = list(JobState)
    last_state, last_progress = 0, -1
    for event in events:
        if event.job is None:
            continue
        state, progress = order.index(event.job.state), event.job.progress
        assert state >= last_state
        if progress is not None:
            assert progress >= last_progress
            last_progress = progress
        last_state = state


@pytest.fixture
async def gateway(clock: ManualClock) -> AsyncIterator[FakeGateway]:
    # One fixed duration: the sequence of polls (and so of events) is exact.
    async with FakeGateway(clock=clock, durations=(30.0, 30.0), video_bytes=48 * 1024) as gw:
        yield gw


RUNNING_TO_THE_END: list[Seen] = [
    ("SubmittedEvent", JobState.QUEUED, None),
    ("ProgressEvent", JobState.QUEUED, 0),
    ("StateChangedEvent", JobState.RUNNING, 25),
    ("ProgressEvent", JobState.RUNNING, 43),
    ("ProgressEvent", JobState.RUNNING, 58),
    ("ProgressEvent", JobState.RUNNING, 75),
    ("ProgressEvent", JobState.RUNNING, 92),
]


async def test_generate_success_sequence(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    events: list[Event] = []
    path = await client.generate(
        prompt="a cat", model="kling-v1", output=tmp_path / "cat.mp4", on_event=events.append
    )
    assert seen(events) == [
        *RUNNING_TO_THE_END,
        ("StateChangedEvent", JobState.SUCCEEDED, 100),
        ("DownloadedEvent", JobState.SUCCEEDED, 100),
    ]
    assert_never_backwards(events)
    submitted, done = events[0], events[-1]
    assert isinstance(submitted, SubmittedEvent)
    assert isinstance(done, DownloadedEvent)
    assert done.path == path == tmp_path / "cat.mp4"
    assert done.size == path.stat().st_size == 48 * 1024
    assert done.job.id == submitted.job.id
    changed = events[-2]
    assert isinstance(changed, StateChangedEvent)
    assert changed.previous.state is JobState.RUNNING
    assert gateway.stats.creates == 1


async def test_generate_failed_job_sequence(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    gateway.set_config(failure_rate=1.0)
    events: list[Event] = []
    with pytest.raises(JobFailedError) as raised:
        await client.generate(
            prompt="a cat", model="kling-v1", output=tmp_path / "cat.mp4", on_event=events.append
        )
    rows = seen(events)
    assert rows[0] == ("SubmittedEvent", JobState.QUEUED, None)
    assert rows[-2][:2] == ("StateChangedEvent", JobState.FAILED)
    assert rows[-1][:2] == ("FailedEvent", JobState.FAILED)
    assert {row[0] for row in rows[1:-2]} <= {"ProgressEvent", "StateChangedEvent"}
    assert_never_backwards(events)
    failed = events[-1]
    assert isinstance(failed, FailedEvent)
    assert failed.error is raised.value  # the event carries the error generate raises
    assert failed.request.prompt == "a cat"
    assert not (tmp_path / "cat.mp4").exists()


async def test_generate_timeout_sequence(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    events: list[Event] = []
    with pytest.raises(JobTimeoutError) as raised:
        await client.generate(
            prompt="a cat",
            model="kling-v1",
            output=tmp_path / "cat.mp4",
            timeout=10.0,
            on_event=events.append,
        )
    assert seen(events) == [
        ("SubmittedEvent", JobState.QUEUED, None),
        ("ProgressEvent", JobState.QUEUED, 0),
        ("StateChangedEvent", JobState.RUNNING, 25),
        ("ProgressEvent", JobState.RUNNING, 33),  # the last look, at the deadline
        ("FailedEvent", JobState.RUNNING, 33),
    ]
    failed = events[-1]
    assert isinstance(failed, FailedEvent)
    assert failed.error is raised.value
    assert failed.job == raised.value.job  # the last snapshot seen, to re-attach with


async def test_async_handler_is_awaited_in_order(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    events: list[Event] = []

    async def handler(event: Event) -> None:
        await anyio.lowlevel.checkpoint()  # a real await: a handler that yields
        events.append(event)

    await client.generate(
        prompt="a cat", model="kling-v1", output=tmp_path / "a.mp4", on_event=handler
    )
    assert seen(events) == [
        *RUNNING_TO_THE_END,
        ("StateChangedEvent", JobState.SUCCEEDED, 100),
        ("DownloadedEvent", JobState.SUCCEEDED, 100),
    ]


async def test_a_handler_that_raises_is_logged_and_the_job_goes_on(
    client: Client, gateway: FakeGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def handler(event: Event) -> None:
        calls.append(type(event).__name__)
        raise RuntimeError("progress bar bug")

    with caplog.at_level(logging.ERROR, logger="asyncvideo"):
        path = await client.generate(
            prompt="a cat", model="kling-v1", output=tmp_path / "a.mp4", on_event=handler
        )
    assert path.stat().st_size == 48 * 1024
    assert calls == [row[0] for row in RUNNING_TO_THE_END] + [
        "StateChangedEvent",
        "DownloadedEvent",
    ]
    raised = [r for r in caplog.records if "on_event handler raised" in r.getMessage()]
    assert len(raised) == len(calls)
    assert raised[0].exc_info is not None
    assert "progress bar bug" in str(raised[0].exc_info[1])
    assert gateway.stats.creates == 1  # nothing was sent twice


async def test_wait_emits_changes_only(client: Client, gateway: FakeGateway) -> None:
    job = await client.submit(prompt="a cat", model="kling-v1")
    events: list[Event] = []
    done = await client.wait(job, on_event=events.append)
    assert done.state is JobState.SUCCEEDED
    assert seen(events) == [
        *RUNNING_TO_THE_END[1:],
        ("StateChangedEvent", JobState.SUCCEEDED, 100),
    ]
    assert all(isinstance(e, StateChangedEvent | ProgressEvent) for e in events)
    # Already terminal: nothing to watch, nothing to tell.
    again: list[Event] = []
    assert await client.wait(done, on_event=again.append) is done
    assert again == []


async def test_wait_timeout_raises_after_the_changes(client: Client, gateway: FakeGateway) -> None:
    job = await client.submit(prompt="a cat", model="kling-v1")
    events: list[Event] = []
    with pytest.raises(JobTimeoutError):
        await client.wait(job, timeout=10.0, on_event=events.append)
    assert seen(events) == [*RUNNING_TO_THE_END[1:3], ("ProgressEvent", JobState.RUNNING, 33)]


async def test_bad_request_raises_before_any_event(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    events: list[Event] = []
    with pytest.raises(ValidationError):
        await client.generate(
            prompt="a cat", model="kling-v1", seconds=-1, output=tmp_path, on_event=events.append
        )
    assert events == []
    assert gateway.stats.total_requests == 0


@pytest.mark.parametrize("timeout", [None, 10.0], ids=["success", "timeout"])
async def test_a_batch_of_one_sees_what_generate_sees(
    make_client: ClientFactory, gateway: FakeGateway, tmp_path: Path, timeout: float | None
) -> None:
    # One place turns polls into events: the same job's story reads the same both ways.
    single: list[Event] = []
    with contextlib.suppress(JobTimeoutError):
        await make_client().generate(
            prompt="a cat",
            model="kling-v1",
            output=tmp_path / "one.mp4",
            timeout=timeout,
            on_event=single.append,
        )
    batch: list[Event] = []
    requests = [VideoRequest(prompt="a cat", model="kling-v1")]
    async with make_client().generate_many(
        requests, output_dir=tmp_path / "batch", timeout=timeout, on_event=batch.append
    ) as outcomes:
        async for _ in outcomes:
            pass
    assert len(single) >= 4
    assert seen(batch) == seen(single)
