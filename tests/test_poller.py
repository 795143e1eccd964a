"""The client's one poller: every wait is a heap entry, one task sleeps for them all.

These run on a ManualClock shared with the FakeGateway, so a 600 s deadline
passes in milliseconds and poll counts are exact.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from asyncvideo import (
    AiohttpTransport,
    Client,
    Job,
    JobState,
    Limits,
    ManualClock,
    PollPolicy,
    RetryPolicy,
    errors,
)
from asyncvideo._poller import PollUpdate, _last_look
from asyncvideo._transport import HTTPRequest, HTTPResponse
from asyncvideo.testing import FakeGateway

pytestmark = pytest.mark.anyio

#: The seeds' schedule without jitter, so that poll times are exact.
EXACT = PollPolicy(jitter=0.0)


async def settle() -> None:
    """Let tasks that are ending finish (a few loop turns, no time passes)."""
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


def poller_tasks() -> list[str]:
    """The names of the poller's tasks alive now: its timer and its poll workers."""
    names = (getattr(task.get_coro(), "__qualname__", "") for task in asyncio.all_tasks())
    return [name for name in names if name.startswith("Poller.")]


class RecordingClock(ManualClock):
    """A ManualClock that notes, at every sleep, who sleeps and which poller tasks live."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[tuple[str, list[str]]] = []

    async def sleep(self, seconds: float) -> None:
        task = asyncio.current_task()
        sleeper = getattr(task.get_coro(), "__qualname__", "") if task else ""
        self.sleeps.append((sleeper, poller_tasks()))
        await super().sleep(seconds)


@pytest.fixture
def clock() -> RecordingClock:
    return RecordingClock()


@pytest.fixture
async def gateway(clock: RecordingClock) -> AsyncIterator[FakeGateway]:
    async with FakeGateway(clock=clock, durations=10.0, video_bytes=4096) as gw:
        yield gw


@pytest.fixture
async def client(gateway: FakeGateway, clock: RecordingClock) -> AsyncIterator[Client]:
    async with Client(
        api_key=gateway.api_key,
        base_url=gateway.url,
        clock=clock,
        poll_policy=EXACT,
        retry_policy=RetryPolicy(base_delay=0.5, max_delay=4.0),
        seed=1,
    ) as client:
        yield client


async def submit_many(client: Client, n: int) -> list[Job]:
    jobs: list[Job] = []

    async def one(i: int) -> None:
        jobs.append(await client.submit(prompt=f"clip {i}", model="kling-v1"))

    async with anyio.create_task_group() as group:
        for i in range(n):
            group.start_soon(one, i)
    return jobs


async def test_a_thousand_waits_are_one_task_and_exact_polls(
    client: Client, gateway: FakeGateway, clock: RecordingClock
) -> None:
    jobs = await submit_many(client, 1000)
    assert clock.monotonic() == 0.0  # every job started at once: exact arithmetic below
    done: list[Job] = []

    async def wait(job: Job) -> None:
        done.append(await client.wait(job))

    async with anyio.create_task_group() as group:
        for job in jobs:
            group.start_soon(wait, job)
    assert len(done) == 1000
    assert all(job.state is JobState.SUCCEEDED for job in done)
    # 10 s jobs, polled at 2.5, 7.5 and 12.5 s: three polls each, not one more.
    assert EXACT.minimum_polls(10.0) == 3
    assert gateway.stats.requests["status"] == 1000 * 3
    # One task slept for all of them, and nothing else of the poller lived while it did.
    assert clock.sleeps
    assert {sleeper for sleeper, _ in clock.sleeps} == {"Poller._run"}
    assert all(alive == ["Poller._run"] for _, alive in clock.sleeps)
    assert client._poller.starts == 1
    # The first sleep held all thousand waits as heap entries.
    assert len(clock.sleeps) == 3
    await settle()
    assert poller_tasks() == []  # nothing left to watch: no idle task either
    assert not client._poller._workers  # and no finished worker is held on to


async def test_the_heap_holds_every_waiter(client: Client, clock: RecordingClock) -> None:
    jobs = await submit_many(client, 50)
    seen: list[tuple[int, int]] = []
    original = clock.sleep

    async def noting(seconds: float) -> None:
        seen.append((len(client._poller), client._poller.scheduled))
        await original(seconds)

    clock.sleep = noting  # type: ignore[method-assign]
    async with anyio.create_task_group() as group:
        for job in jobs:
            group.start_soon(client.wait, job)
    assert seen[0] == (50, 50)


async def test_each_wait_keeps_its_own_deadline(
    client: Client, gateway: FakeGateway, clock: RecordingClock
) -> None:
    gateway.set_config(durations=10_000.0)
    short, long = await submit_many(client, 2)
    ended: dict[str, tuple[float, errors.JobTimeoutError]] = {}

    async def wait(name: str, job: Job, timeout: float) -> None:
        with pytest.raises(errors.JobTimeoutError) as caught:
            await client.wait(job, timeout=timeout)
        ended[name] = (clock.monotonic(), caught.value)

    async with anyio.create_task_group() as group:
        group.start_soon(wait, "short", short, 20.0)
        group.start_soon(wait, "long", long, 100.0)
    short_at, short_error = ended["short"]
    long_at, long_error = ended["long"]
    assert short_error.timeout == 20.0
    assert short_error.job.id == short.id
    assert 20.0 <= short_at < 22.5  # at its deadline, before the other's next poll
    assert long_error.timeout == 100.0
    assert 100.0 <= long_at < 101.0
    assert not long_error.job.is_terminal


async def test_cancelling_one_wait_leaves_the_other_polling(
    client: Client, gateway: FakeGateway, clock: RecordingClock
) -> None:
    gateway.set_config(durations=10_000.0)
    (left,) = await submit_many(client, 1)
    gateway.set_config(durations=60.0)
    (stayed,) = await submit_many(client, 1)
    result: list[Job] = []

    async def stay() -> None:
        result.append(await client.wait(stayed))

    async with anyio.create_task_group() as group:
        group.start_soon(stay)
        with anyio.CancelScope() as leaving:

            async def leave_at_30() -> None:
                while clock.monotonic() < 30.0:
                    await anyio.lowlevel.checkpoint()
                leaving.cancel()

            group.start_soon(leave_at_30)
            await client.wait(left)
        assert leaving.cancelled_caught
        assert len(client._poller) == 1  # the cancelled wait's entry is gone
        polls_of_left = polls_of(gateway, left.id)
    assert result[0].state is JobState.SUCCEEDED
    assert polls_of(gateway, left.id) == polls_of_left  # never polled again
    assert polls_of(gateway, stayed.id) == EXACT.minimum_polls(60.0)


def polls_of(gateway: FakeGateway, task_id: str) -> int:
    return sum(1 for r in gateway.requests if r.kind == "status" and task_id in r.path)


async def test_a_transient_error_polls_again_and_a_final_one_ends_only_its_wait(
    client: Client, gateway: FakeGateway
) -> None:
    (good,) = await submit_many(client, 1)
    ghost = Job(id="kling_404", model="kling-v1", provider="kling", state=JobState.QUEUED)
    # More 503s than the request retries absorb: one poll fails, the next succeeds.
    gateway.script_failures("status", [503] * 4)
    results: dict[str, Job | BaseException] = {}

    async def wait(name: str, job: Job) -> None:
        try:
            results[name] = await client.wait(job)
        except errors.AsyncVideoError as exc:
            results[name] = exc

    async with anyio.create_task_group() as group:
        group.start_soon(wait, "good", good)
        group.start_soon(wait, "ghost", ghost)
    assert isinstance(results["ghost"], errors.NotFoundError)
    finished = results["good"]
    assert isinstance(finished, Job)
    assert finished.state is JobState.SUCCEEDED


async def test_a_per_call_poll_policy_is_honoured(client: Client, gateway: FakeGateway) -> None:
    (job,) = await submit_many(client, 1)
    every_second = PollPolicy(first_delay=1.0, steps=(), final_interval=1.0, jitter=0.0)
    done = await client.wait(job, poll_policy=every_second)
    assert done.state is JobState.SUCCEEDED
    assert gateway.stats.requests["status"] == 10  # 1, 2, ... 10 s


async def test_aclose_stops_the_poller_and_ends_waits(
    gateway: FakeGateway, clock: RecordingClock
) -> None:
    gateway.set_config(durations=10_000.0)
    client = Client(api_key=gateway.api_key, base_url=gateway.url, clock=clock, seed=1)
    (job,) = await submit_many(client, 1)
    outcome: list[BaseException] = []

    async def wait() -> None:
        try:
            await client.wait(job)
        except errors.AsyncVideoError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(wait)
        while not clock.sleeps:
            await anyio.lowlevel.checkpoint()
        assert poller_tasks()
        await client.aclose()
    assert str(outcome[0]) == "the client's poller stopped; the client was closed"
    await settle()
    assert poller_tasks() == []
    with pytest.raises(errors.AsyncVideoError, match=r"^the client is closed; it polls no more$"):
        await client.wait(job)


async def test_generate_waits_through_the_poller(
    client: Client, gateway: FakeGateway, clock: RecordingClock, tmp_path: Path
) -> None:
    async def generate(i: int) -> None:
        await client.generate(prompt=f"clip {i}", model="kling-v1", output=tmp_path / f"{i}.mp4")

    async with anyio.create_task_group() as group:
        for i in range(20):
            group.start_soon(generate, i)
    assert len(list(tmp_path.glob("*.mp4"))) == 20
    assert {sleeper for sleeper, _ in clock.sleeps} == {"Poller._run"}
    # generate checks its output folder in a worker thread before the create, and the
    # manual clock runs on meanwhile: later jobs start late in virtual time and need
    # fewer polls, so the count is bounded, not exact.
    assert 20 <= gateway.stats.requests["status"] <= 20 * EXACT.minimum_polls(10.0)


@pytest.mark.parametrize(("timeout", "polls"), [(2.52, 2), (7.53, 3), (2.5, 1)])
async def test_a_deadline_just_after_a_poll_is_one_more_poll_not_a_spin(
    client: Client, gateway: FakeGateway, clock: RecordingClock, timeout: float, polls: int
) -> None:
    # Polls due within the batching slack (2% of an interval) go out early; the one
    # at the deadline must not, or it finds the deadline not reached and polls again.
    gateway.set_config(durations=1e9)
    job = await client.submit(prompt="slow", model="kling-v1")
    with pytest.raises(errors.JobTimeoutError):
        await client.wait(job, timeout=timeout)
    assert gateway.stats.requests["status"] == polls
    assert clock.monotonic() == pytest.approx(timeout)


async def test_a_nan_timeout_is_refused(client: Client, gateway: FakeGateway) -> None:
    job = await client.submit(prompt="slow", model="kling-v1")
    refusal = r"^a wait.s timeout must be a number of seconds, not NaN$"
    with pytest.raises(errors.ValidationError, match=refusal):
        await client.wait(job, timeout=float("nan"))
    assert gateway.stats.requests["status"] == 0


async def test_aclose_right_after_a_watch_ends_it_as_closed(
    client: Client, gateway: FakeGateway
) -> None:
    job = await client.submit(prompt="slow", model="kling-v1")
    updates: list[PollUpdate] = []
    watch = client._poller.watch(job, policy=EXACT, deadline=600.0, listener=updates.append)
    await client.aclose()  # before the poller's timer task ever ran
    assert [str(update.error) for update in updates] == ["the client was closed"]
    assert updates[0].job is job
    assert updates[0].previous is job
    assert client._poller.scheduled == 0
    watch.cancel()  # a finished watch: nothing to do
    assert client._poller.scheduled == 0
    assert len(updates) == 1
    assert updates[0].final
    assert poller_tasks() == []  # nothing of the poller outlives aclose
    assert gateway.stats.requests["status"] == 0


class ClosingTransport:
    """The default transport, noting whether the client closed it."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport()
        self.closed = False

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        return await self.inner.send(request)

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()


async def test_aclose_from_a_cancelled_scope_still_ends_the_polls_and_closes(
    gateway: FakeGateway, clock: RecordingClock
) -> None:
    gateway.set_config(durations=10_000.0)
    transport = ClosingTransport()
    client = Client(
        api_key=gateway.api_key, base_url=gateway.url, clock=clock, seed=1, transport=transport
    )
    (job,) = await submit_many(client, 1)
    outcome: list[BaseException] = []

    async def wait() -> None:
        try:
            await client.wait(job)
        except errors.AsyncVideoError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(wait)
        while not clock.sleeps:
            await anyio.lowlevel.checkpoint()
        with anyio.CancelScope() as scope:
            scope.cancel()  # the closer is itself being cancelled: closing still completes
            await client.aclose()
        assert poller_tasks() == []
    assert "closed" in str(outcome[0])
    assert transport.closed


def test_the_last_look_is_five_percent_of_the_timeout_at_most_a_second() -> None:
    assert _last_look(2.0) == pytest.approx(0.1)
    assert _last_look(10.0) == pytest.approx(0.5)
    assert _last_look(600.0) == 1.0


async def test_the_last_look_at_the_deadline_can_still_see_the_job_finish(
    client: Client, gateway: FakeGateway, clock: RecordingClock
) -> None:
    gateway.set_config(durations=18.0)
    job = await client.submit(prompt="just in time", model="kling-v1")
    done = await client.wait(job, timeout=20.0)
    assert done.state is JobState.SUCCEEDED
    # 2.5, 7.5, 12.5 and 17.5 s find it running; the look at the 20 s deadline sees it done.
    assert gateway.stats.requests["status"] == 5
    assert clock.monotonic() == pytest.approx(20.0)


def succeeded_job() -> Job:
    return Job(id="kling_done", model="kling-v1", provider="kling", state=JobState.SUCCEEDED)


async def test_a_job_already_terminal_is_told_at_once_without_a_poll(
    client: Client, gateway: FakeGateway
) -> None:
    job = succeeded_job()
    updates: list[PollUpdate] = []
    client._poller.watch(job, policy=EXACT, deadline=600.0, listener=updates.append)
    assert updates == [PollUpdate(job, job)]
    assert updates[0].final
    assert len(client._poller) == 0
    assert gateway.stats.requests["status"] == 0


@pytest.mark.parametrize("deadline", [0.0, -1.0])
async def test_a_deadline_already_passed_ends_at_once_without_a_poll(
    client: Client, gateway: FakeGateway, deadline: float
) -> None:
    job = await client.submit(prompt="late", model="kling-v1")
    updates: list[PollUpdate] = []
    client._poller.watch(job, policy=EXACT, deadline=deadline, listener=updates.append)
    (update,) = updates
    assert isinstance(update.error, errors.JobTimeoutError)
    assert update.error.timeout == deadline
    assert update.job is job
    assert update.previous is job
    assert len(client._poller) == 0
    await settle()
    assert gateway.stats.requests["status"] == 0


async def test_only_polls_that_change_state_or_progress_are_told(
    client: Client, gateway: FakeGateway
) -> None:
    gateway.set_config(durations=200.0)  # queued, at progress 0, for its first 20 s
    job = await client.submit(prompt="queued a while", model="kling-v1")
    updates: list[PollUpdate] = []
    client._poller.watch(job, policy=EXACT, deadline=19.0, listener=updates.append)
    while len(client._poller):
        await anyio.lowlevel.checkpoint()
    # Polls at 2.5, 7.5, 12.5, 17.5 and 19 s: the first finds progress 0 (it was
    # unknown), the next three find nothing new, the last one ends the watch.
    assert gateway.stats.requests["status"] == 5
    first, last = updates
    assert (first.previous.progress, first.job.state, first.job.progress) == (
        None,
        JobState.QUEUED,
        0,
    )
    assert not first.final
    assert isinstance(last.error, errors.JobTimeoutError)
    assert last.error.job is last.job  # the look at the deadline, and the one before it
    assert (last.job.state, last.previous.state) == (JobState.QUEUED, JobState.QUEUED)
    assert last.job is not last.previous


async def test_a_first_delay_of_zero_polls_at_once_then_by_the_first_step(
    client: Client, gateway: FakeGateway, clock: RecordingClock
) -> None:
    gateway.set_config(durations=0.6)
    job = await client.submit(prompt="quick", model="kling-v1")
    policy = PollPolicy(first_delay=0.0, steps=((1.0, 0.25),), final_interval=5.0, jitter=0.0)
    done = await client.wait(job, poll_policy=policy)
    assert done.state is JobState.SUCCEEDED
    assert gateway.stats.requests["status"] == 4  # at 0, 0.25, 0.5 and 0.75 s
    assert clock.monotonic() == pytest.approx(0.75)


async def test_a_failed_poll_is_logged_and_polled_again(
    client: Client, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    job = await client.submit(prompt="a cat", model="kling-v1")
    gateway.script_failures("status", [503] * 4)  # more than the request retries absorb
    caplog.set_level(logging.WARNING, logger="asyncvideo")
    done = await client.wait(job)
    assert done.state is JobState.SUCCEEDED
    (message,) = [record.getMessage() for record in caplog.records]
    assert message.startswith(f"poll of task {job.id} failed, will poll again: ")
    assert "503" in message


async def test_a_final_error_ends_the_watch_with_the_last_snapshot(client: Client) -> None:
    ghost = Job(id="kling_404", model="kling-v1", provider="kling", state=JobState.QUEUED)
    updates: list[PollUpdate] = []
    client._poller.watch(ghost, policy=EXACT, deadline=600.0, listener=updates.append)
    while len(client._poller):
        await anyio.lowlevel.checkpoint()
    (update,) = updates
    assert isinstance(update.error, errors.NotFoundError)
    assert update.job is ghost
    assert update.previous is ghost
    assert update.final


@pytest.mark.parametrize(
    ("watches", "quiet", "rebuilt_at"),
    [
        (200, 100, 101),  # more than 64 dead, but not yet half of the heap
        (100, 64, 65),  # half of the heap dead, but not yet more than 64
        (10, 9, None),  # a few dead entries are never worth a rebuild
    ],
)
async def test_dead_heap_entries_are_swept_once_many_and_half(
    client: Client, watches: int, quiet: int, rebuilt_at: int | None
) -> None:
    poller = client._poller
    jobs = [
        Job(id=f"kling_{i}", model="kling-v1", provider="kling", state=JobState.QUEUED)
        for i in range(watches)
    ]
    # No await in between: the timer never runs, so only cancelling touches the heap.
    registered = [
        poller.watch(job, policy=EXACT, deadline=600.0, listener=lambda update: None)
        for job in jobs
    ]
    for watch in registered[:quiet]:
        watch.cancel()
    assert len(poller._heap) == watches
    assert poller.scheduled == watches - quiet
    if rebuilt_at is not None:
        registered[quiet].cancel()
        assert len(poller._heap) == poller.scheduled == watches - rebuilt_at
    for watch in registered:
        watch.cancel()
    await settle()
    assert len(poller) == 0


async def test_cancelled_entries_leave_the_count_of_scheduled_polls_right(
    client: Client, clock: RecordingClock
) -> None:
    jobs = await submit_many(client, 5)
    seen: list[tuple[int, int]] = []
    original = clock.sleep

    async def noting(seconds: float) -> None:
        seen.append((len(client._poller), client._poller.scheduled))
        await original(seconds)

    clock.sleep = noting  # type: ignore[method-assign]
    registered = [
        client._poller.watch(job, policy=EXACT, deadline=600.0, listener=lambda update: None)
        for job in jobs
    ]
    for watch in registered[:3]:
        watch.cancel()
    while len(client._poller):
        await anyio.lowlevel.checkpoint()
    # Before the first poll: 2 live, 2 scheduled; after it (the 3 dead entries popped
    # on the way): the same; the 10 s jobs then finish at the third poll.
    assert seen == [(2, 2), (2, 2), (2, 2)]


async def test_the_final_update_of_a_finished_job_carries_the_snapshot_before(
    client: Client,
) -> None:
    (job,) = await submit_many(client, 1)
    updates: list[PollUpdate] = []
    client._poller.watch(job, policy=EXACT, deadline=600.0, listener=updates.append)
    while len(client._poller):
        await anyio.lowlevel.checkpoint()
    *_, before, last = updates
    assert last.final
    assert last.error is None
    assert last.job.state is JobState.SUCCEEDED
    assert last.previous is before.job


async def test_a_wait_started_late_counts_its_deadline_from_its_own_start(
    client: Client, gateway: FakeGateway, clock: RecordingClock
) -> None:
    clock.advance(1000.0)
    (job,) = await submit_many(client, 1)
    done = await client.wait(job, timeout=30.0)
    assert done.state is JobState.SUCCEEDED
    assert gateway.stats.requests["status"] == 3  # 2.5, 7.5 and 12.5 s after its start


async def test_every_poll_of_a_jittered_policy_is_jittered(
    client: Client, gateway: FakeGateway, clock: RecordingClock
) -> None:
    gateway.set_config(durations=30.0)
    (job,) = await submit_many(client, 1)
    slept: list[float] = []
    original = clock.sleep

    async def noting(seconds: float) -> None:
        slept.append(seconds)
        await original(seconds)

    clock.sleep = noting  # type: ignore[method-assign]
    await client.wait(job, poll_policy=PollPolicy(jitter=0.1))
    first, *later = slept
    assert first != 2.5
    assert 2.25 <= first <= 2.75
    assert later
    assert all(gap != 5.0 for gap in later)
    assert all(4.5 <= gap <= 5.5 for gap in later)


@pytest.mark.parametrize(("offset", "wake_ups"), [(0.03, 3), (0.07, 6)])
async def test_polls_due_within_the_slack_go_out_in_one_wake_up(
    client: Client, gateway: FakeGateway, clock: RecordingClock, offset: float, wake_ups: int
) -> None:
    early, late = await submit_many(client, 2)
    ended: list[PollUpdate] = []

    def listener(update: PollUpdate) -> None:
        if update.final:
            ended.append(update)

    client._poller.watch(early, policy=EXACT, deadline=600.0, listener=listener)
    clock.advance(offset)  # the slack is 2% of the first delay: 0.05 s
    client._poller.watch(late, policy=EXACT, deadline=600.0, listener=listener)
    while len(ended) < 2:
        await anyio.lowlevel.checkpoint()
    # Within the slack: one wake-up per round for both, at 2.5, 7.5 and 12.5 s;
    # beyond it, each round wakes the timer twice.
    assert len(clock.sleeps) == wake_ups
    assert gateway.stats.requests["status"] == 6


async def test_the_poll_at_a_deadline_never_goes_out_early_with_another(
    client: Client, gateway: FakeGateway, clock: RecordingClock
) -> None:
    gateway.set_config(durations=1e9)
    other, timed = await submit_many(client, 2)
    updates: list[PollUpdate] = []
    client._poller.watch(other, policy=EXACT, deadline=600.0, listener=lambda update: None)
    clock.advance(0.03)
    # Its first poll (2.53 s) is its deadline: within the other's slack, but not sent
    # with it at 2.5 s, or it would find time left and poll once more.
    watch = client._poller.watch(timed, policy=EXACT, deadline=2.5, listener=updates.append)
    while not updates:
        await anyio.lowlevel.checkpoint()
    assert isinstance(updates[-1].error, errors.JobTimeoutError)
    assert polls_of(gateway, timed.id) == 1
    assert watch.done


async def test_a_deadline_under_the_first_delay_is_one_poll_at_the_deadline(
    client: Client, gateway: FakeGateway, clock: RecordingClock
) -> None:
    gateway.set_config(durations=1e9)
    job = await client.submit(prompt="slow", model="kling-v1")
    with pytest.raises(errors.JobTimeoutError):
        await client.wait(job, timeout=0.5)
    assert gateway.stats.requests["status"] == 1
    assert clock.monotonic() == pytest.approx(0.5)


async def test_on_a_real_clock_a_sooner_poll_wakes_the_sleeping_timer(
    gateway: FakeGateway,
) -> None:
    async with Client(api_key=gateway.api_key, base_url=gateway.url, seed=1) as client:
        job = await client.submit(prompt="a cat", model="kling-v1")
        slow = PollPolicy(first_delay=30.0, steps=(), final_interval=30.0, jitter=0.0)
        fast = PollPolicy(first_delay=0.02, steps=(), final_interval=30.0, jitter=0.0)
        updates: list[PollUpdate] = []
        told = anyio.Event()

        def listener(update: PollUpdate) -> None:
            updates.append(update)
            told.set()

        late = client._poller.watch(job, policy=slow, deadline=600.0, listener=listener)
        for _ in range(3):
            await anyio.lowlevel.checkpoint()  # the timer now sleeps for 30 real seconds
        client._poller.watch(job, policy=fast, deadline=0.02, listener=listener)
        with anyio.fail_after(2):
            await told.wait()
        assert isinstance(updates[0].error, errors.JobTimeoutError)
        late.cancel()
        with anyio.fail_after(2):  # nothing left to watch: the timer ends, not sleeps on
            while poller_tasks():
                await anyio.lowlevel.checkpoint()


async def test_cancelling_a_watch_while_it_is_polled_leaves_no_dead_entry_counted(
    client: Client, gateway: FakeGateway
) -> None:
    (job,) = await submit_many(client, 1)
    gateway.set_config(latency=0.05)  # real seconds: the poll stays in flight a while
    watch = client._poller.watch(job, policy=EXACT, deadline=600.0, listener=lambda u: None)
    while watch.polling is None:
        await anyio.lowlevel.checkpoint()
    watch.cancel()  # out of the heap, in a worker's hands: nothing dead is left behind
    assert client._poller.scheduled == 0
    assert len(client._poller._heap) == 0
    await settle()
    assert gateway.stats.requests["status"] <= 1


async def test_polls_in_flight_never_exceed_max_polls(
    gateway: FakeGateway, clock: RecordingClock
) -> None:
    async with Client(
        api_key=gateway.api_key,
        base_url=gateway.url,
        clock=clock,
        poll_policy=EXACT,
        limits=Limits(max_polls=2),
        seed=1,
    ) as client:
        jobs = await submit_many(client, 10)
        workers: list[int] = []

        def listener(update: PollUpdate) -> None:
            workers.append(sum(name == "Poller._worker" for name in poller_tasks()))

        for job in jobs:
            client._poller.watch(job, policy=EXACT, deadline=600.0, listener=listener)
        while len(client._poller):
            await anyio.lowlevel.checkpoint()
    assert max(workers) == 2
    assert gateway.stats.requests["status"] == 10 * 3


class CountingWorkers(ClosingTransport):
    """Notes the poll workers alive at every send; each answer takes 20 real ms."""

    def __init__(self) -> None:
        super().__init__()
        self.workers: list[int] = []

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        self.workers.append(sum(name == "Poller._worker" for name in poller_tasks()))
        await asyncio.sleep(0.02)
        return await super().send(request)


async def test_on_a_real_clock_busy_workers_are_never_joined_by_more_than_max_polls(
    gateway: FakeGateway,
) -> None:
    transport = CountingWorkers()
    async with Client(
        api_key=gateway.api_key,
        base_url=gateway.url,
        transport=transport,
        limits=Limits(max_polls=2),
        seed=1,
    ) as client:
        jobs = await submit_many(client, 6)
        often = PollPolicy(first_delay=0.01, steps=(), final_interval=0.01, jitter=0.0)
        ended = anyio.Event()
        left = len(jobs)

        def listener(update: PollUpdate) -> None:
            nonlocal left
            left -= update.final
            if not left:
                ended.set()

        for job in jobs:
            client._poller.watch(job, policy=often, deadline=0.3, listener=listener)
        with anyio.fail_after(5):
            await ended.wait()
    status_sends = transport.workers[6:]  # after the six creates
    assert status_sends
    assert max(status_sends) <= 2


async def test_a_listener_that_raises_is_logged_and_polling_goes_on(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    broken, fine = await submit_many(client, 2)
    ended: list[PollUpdate] = []

    def raises(update: PollUpdate) -> None:
        raise RuntimeError("listener bug")

    def listener(update: PollUpdate) -> None:
        if update.final:
            ended.append(update)

    caplog.set_level(logging.ERROR, logger="asyncvideo")
    client._poller.watch(broken, policy=EXACT, deadline=600.0, listener=raises)
    client._poller.watch(fine, policy=EXACT, deadline=600.0, listener=listener)
    while len(client._poller):
        await anyio.lowlevel.checkpoint()
    assert ended[0].job.state is JobState.SUCCEEDED
    messages = {record.getMessage() for record in caplog.records}
    assert messages == {"a poll listener raised; polling goes on"}


async def test_the_timer_task_starts_again_for_a_wait_after_an_idle_spell(
    client: Client, gateway: FakeGateway
) -> None:
    first, second = await submit_many(client, 2)
    await client.wait(first)
    await settle()
    assert poller_tasks() == []  # idle: no task
    await client.wait(second)
    assert client._poller.starts == 2


async def test_the_slack_is_a_fiftieth_of_the_soonest_first_poll_or_step(
    client: Client, gateway: FakeGateway, clock: RecordingClock
) -> None:
    # First poll at 5 s, but a 0.25 s step below 1 s: the slack is 0.005 s, so two
    # watches 0.03 s apart are polled in separate wake-ups.
    policy = PollPolicy(first_delay=5.0, steps=((1.0, 0.25),), final_interval=5.0, jitter=0.0)
    early, late = await submit_many(client, 2)
    ended: list[PollUpdate] = []

    def listener(update: PollUpdate) -> None:
        if update.final:
            ended.append(update)

    client._poller.watch(early, policy=policy, deadline=600.0, listener=listener)
    clock.advance(0.03)
    client._poller.watch(late, policy=policy, deadline=600.0, listener=listener)
    while len(ended) < 2:
        await anyio.lowlevel.checkpoint()
    assert len(clock.sleeps) == 4  # 5 and 10 s, each twice


async def test_woken_entries_leave_the_count_of_scheduled_polls_right(client: Client) -> None:
    poller = client._poller
    jobs = [
        Job(id=f"kling_{i}", model="kling-v1", provider="kling", state=JobState.QUEUED)
        for i in range(5)
    ]
    registered = [
        poller.watch(job, policy=EXACT, deadline=600.0, listener=lambda update: None)
        for job in jobs
    ]
    # No await in between: the timer never runs; each wake leaves its old entry dead.
    for job in jobs:
        assert poller.wake("kling", job.id) is True
    assert len(poller._heap) == 10
    assert poller.scheduled == 5
    assert poller.wake("kling", "kling_0") is True  # due now already: nothing is added
    assert len(poller._heap) == 10
    assert poller.wake("kling", "kling_9") is False  # not watched
    for watch in registered:
        watch.cancel()
    await settle()
    assert len(poller) == 0


async def test_a_wake_still_finds_the_other_wait_of_a_task_when_one_ends(client: Client) -> None:
    poller = client._poller
    job = Job(id="kling_1", model="kling-v1", provider="kling", state=JobState.QUEUED)
    first = poller.watch(job, policy=EXACT, deadline=600.0, listener=lambda update: None)
    second = poller.watch(job, policy=EXACT, deadline=600.0, listener=lambda update: None)
    first.cancel()
    assert poller.wake("kling", "kling_1") is True  # the second wait is still there
    second.cancel()
    assert poller.wake("kling", "kling_1") is False
    assert poller._by_task == {}  # nothing kept for a task nobody waits for
    await settle()


async def test_each_poll_is_logged_at_debug_with_its_state_and_progress(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncvideo")
    job = await client.submit(prompt="a cat", model="kling-v1")
    done = await client.wait(job)
    polls = [r.getMessage() for r in caplog.records if r.getMessage().startswith("polled task")]
    assert polls[-1] == f"polled task {job.id}: succeeded, progress {done.progress}"
    assert len(polls) >= 2
