"""The bounded concurrent orchestration behind ``Client.generate_many``.

One batch runs these tasks in one anyio task group:

- a feeder that reads requests lazily and submits each once a job slot is free;
- one timer loop over a heap of (next poll time, job), which hands due jobs to
- ``max_polls`` poll workers, which refresh a job and either schedule its next
  poll, queue it for download, or finish it;
- ``max_downloads`` download workers, which take the soonest-expiring video first.

No job owns a sleeping coroutine: 10,000 waiting jobs are 10,000 heap entries.
The scheduler knows nothing about wire formats; it calls the client's
``submit``/``refresh``/``download``, which carry the limits and retries.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio
import attrs
from anyio.streams.memory import MemoryObjectSendStream

from ._events import (
    DownloadedEvent,
    Event,
    EventHandler,
    FailedEvent,
    ProgressEvent,
    StateChangedEvent,
    SubmittedEvent,
)
from ._models import Job, Outcome, VideoRequest
from ._polling import PollPolicy
from ._states import JobState
from .errors import (
    AuthenticationError,
    InsufficientQuotaError,
    JobFailedError,
    JobTimeoutError,
    ValidationError,
)

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["Batch"]

logger = logging.getLogger("asyncvideo")

#: Errors that would fail every job of the batch: stop at once instead of paying for nothing.
FATAL_ERRORS: tuple[type[Exception], ...] = (AuthenticationError, InsufficientQuotaError)

T = TypeVar("T")


class _PriorityQueue(Generic[T]):
    """A heap that workers ``await pop()`` from, lowest priority value first."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._ready = anyio.Semaphore(0)
        self._order = itertools.count()

    def push(self, priority: float, item: T) -> None:
        heapq.heappush(self._heap, (priority, next(self._order), item))
        self._ready.release()

    async def pop(self) -> T:
        await self._ready.acquire()
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)


@attrs.define(eq=False)
class _Entry:
    """One job in flight: its request, latest snapshot and clock."""

    index: int
    request: VideoRequest
    job: Job
    submitted_at: float


def _coerce(item: object) -> VideoRequest:
    if isinstance(item, VideoRequest):
        return item
    if isinstance(item, Mapping):
        try:
            return VideoRequest(**item)
        except TypeError as exc:
            raise ValidationError(f"bad request fields: {exc}") from exc
    raise ValidationError(f"expected a VideoRequest or a mapping, got {type(item).__name__}")


class Batch:
    """One run of ``generate_many``. Use :meth:`run`; it yields outcomes as jobs end."""

    def __init__(
        self,
        client: Client,
        requests: Iterable[VideoRequest] | AsyncIterable[VideoRequest],
        *,
        output_dir: Path,
        on_event: EventHandler | None,
        timeout: float | None,
        poll_policy: PollPolicy,
    ) -> None:
        self._client = client
        self._clock = client.clock
        self._requests = requests
        self._output_dir = output_dir
        self._on_event = on_event
        self._policy = poll_policy
        self._deadline = poll_policy.deadline if timeout is None else timeout
        limits = client.limits
        self._job_slots = anyio.Semaphore(limits.max_active_jobs)
        self._timers: list[tuple[float, int, _Entry]] = []
        self._order = itertools.count()
        self._due: _PriorityQueue[_Entry] = _PriorityQueue()
        self._downloads: _PriorityQueue[_Entry] = _PriorityQueue()
        self._timer_scope: anyio.CancelScope | None = None
        self._sleeping_until = math.inf
        self._active: dict[int, _Entry] = {}
        self._unsubmitted = 0
        self._feeding_done = False
        self._all_done = anyio.Event()
        self._fatal: BaseException | None = None
        self._scope = anyio.CancelScope()
        self._send: MemoryObjectSendStream[Outcome] | None = None

    # -- the public face -----------------------------------------------------------------------

    async def run(self) -> AsyncGenerator[Outcome, None]:
        """Yield one :class:`Outcome` per request, in completion order.

        The work runs in a task of its own so that no cancel scope spans a
        ``yield``; leaving the loop (break, exception, cancellation) cancels
        it and waits for it, so no task outlives the batch and no half file
        remains under a final name.
        """
        limits = self._client.limits
        send, receive = anyio.create_memory_object_stream[Outcome](limits.max_active_jobs)
        self._send = send
        worker = asyncio.get_running_loop().create_task(self._main(send))
        self._client.track_batch(worker)
        try:
            async with receive:
                async for outcome in receive:
                    yield outcome
            await worker
        finally:
            if not worker.done():
                self._scope.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.wait([worker])
            if worker.done() and not worker.cancelled():
                worker.exception()  # retrieved: the error, if any, was raised above

    async def _main(self, send: MemoryObjectSendStream[Outcome]) -> None:
        async with send:
            with self._scope:
                async with anyio.create_task_group() as group:
                    group.start_soon(self._timer_loop)
                    for _ in range(self._client.limits.max_polls):
                        group.start_soon(self._poll_worker)
                    for _ in range(self._client.limits.max_downloads):
                        group.start_soon(self._download_worker)
                    await self._feed(group)
                    await self._all_done.wait()
                    group.cancel_scope.cancel()
        if self._fatal is not None:
            raise self._fatal

    # -- feeding -------------------------------------------------------------------------------

    async def _feed(self, group: anyio.abc.TaskGroup) -> None:
        index = 0
        if isinstance(self._requests, AsyncIterable):
            async for item in self._requests:
                await self._start(group, index, item)
                index += 1
        else:
            for item in self._requests:
                await self._start(group, index, item)
                index += 1
        self._feeding_done = True
        self._check_done()

    async def _start(self, group: anyio.abc.TaskGroup, index: int, item: object) -> None:
        await self._job_slots.acquire()
        self._unsubmitted += 1
        group.start_soon(self._submit, index, item)

    async def _submit(self, index: int, item: object) -> None:
        request: VideoRequest | None = None
        try:
            request = _coerce(item)
            job = await self._client.submit(request)
        except FATAL_ERRORS as exc:
            self._stop(exc)
            return
        except Exception as exc:
            self._unsubmitted -= 1
            placeholder = request or VideoRequest(prompt="?", model="?")
            await self._finish(Outcome(index=index, request=placeholder, error=exc))
            return
        now = self._clock.monotonic()
        entry = _Entry(index=index, request=request, job=job, submitted_at=now)
        self._active[index] = entry
        self._unsubmitted -= 1
        await self._emit(SubmittedEvent(index=index, job=job))
        if job.is_terminal:
            await self._settle(entry)
        else:
            self._schedule(entry, now + self._policy.next_delay(0.0, self._client.rng))

    # -- polling -------------------------------------------------------------------------------

    def _schedule(self, entry: _Entry, due: float) -> None:
        heapq.heappush(self._timers, (due, next(self._order), entry))
        if due < self._sleeping_until and self._timer_scope is not None:
            self._timer_scope.cancel()  # the timer loop sleeps past this one: wake it

    async def _timer_loop(self) -> None:
        timers = self._timers
        while True:
            now = self._clock.monotonic()
            while timers and timers[0][0] <= now:
                self._due.push(timers[0][0], heapq.heappop(timers)[2])
            self._sleeping_until = timers[0][0] if timers else math.inf
            self._timer_scope = anyio.CancelScope()
            with self._timer_scope:
                if timers:
                    await self._clock.sleep(self._sleeping_until - now)
                else:
                    await anyio.sleep_forever()
            self._timer_scope = None

    async def _poll_worker(self) -> None:
        while True:
            entry = await self._due.pop()
            await self._poll(entry)

    async def _poll(self, entry: _Entry) -> None:
        from ._client import TRANSIENT_ERRORS

        previous = entry.job
        try:
            job = await self._client.refresh(previous)
        except FATAL_ERRORS as exc:
            self._stop(exc)
            return
        except TRANSIENT_ERRORS as exc:
            logger.warning("poll of task %s failed, will poll again: %s", previous.id, exc)
            job = previous
        except Exception as exc:
            await self._finish_entry(entry, error=exc)
            return
        entry.job = job
        if job.state is not previous.state:
            await self._emit(StateChangedEvent(index=entry.index, job=job, previous=previous))
        elif job.progress != previous.progress:
            await self._emit(ProgressEvent(index=entry.index, job=job))
        if job.is_terminal:
            await self._settle(entry)
            return
        now = self._clock.monotonic()
        elapsed = now - entry.submitted_at
        remaining = self._deadline - elapsed
        if remaining <= 0:
            await self._finish_entry(entry, error=JobTimeoutError(job, self._deadline))
            return
        delay = self._policy.next_delay(elapsed, self._client.rng)
        self._schedule(entry, now + min(delay, remaining))

    async def _settle(self, entry: _Entry) -> None:
        job = entry.job
        if job.state is JobState.SUCCEEDED:
            # Soonest-expiring first: a URL that lapses in the queue is a paid clip lost.
            expires = job.expires_at.timestamp() if job.expires_at else math.inf
            self._downloads.push(expires, entry)
        else:
            await self._finish_entry(entry, error=JobFailedError(job))

    # -- downloading ---------------------------------------------------------------------------

    def _path_for(self, entry: _Entry) -> Path:
        from ._client import _safe_name

        return self._output_dir / f"{entry.index:06d}_{_safe_name(entry.job.id)}.mp4"

    async def _download_worker(self) -> None:
        while True:
            entry = await self._downloads.pop()
            path = self._path_for(entry)
            try:
                await self._client.download(entry.job, path)
                size = (await anyio.Path(path).stat()).st_size
            except FATAL_ERRORS as exc:
                self._stop(exc)
                continue
            except Exception as exc:
                await self._finish_entry(entry, error=exc)
                continue
            await self._emit(
                DownloadedEvent(index=entry.index, job=entry.job, path=path, size=size)
            )
            await self._finish_entry(entry, path=path)

    # -- finishing -----------------------------------------------------------------------------

    async def _finish_entry(
        self, entry: _Entry, *, path: Path | None = None, error: BaseException | None = None
    ) -> None:
        self._active.pop(entry.index, None)
        await self._finish(
            Outcome(index=entry.index, request=entry.request, job=entry.job, path=path, error=error)
        )

    async def _finish(self, outcome: Outcome) -> None:
        if outcome.error is not None:
            await self._emit(
                FailedEvent(
                    index=outcome.index,
                    request=outcome.request,
                    job=outcome.job,
                    error=outcome.error,
                )
            )
        self._job_slots.release()
        if self._send is not None:
            await self._send.send(outcome)
        self._check_done()

    def _check_done(self) -> None:
        if self._feeding_done and not self._active and not self._unsubmitted:
            self._all_done.set()

    def _stop(self, error: BaseException) -> None:
        """Stop the whole batch with ``error`` (bad key, no quota)."""
        if self._fatal is None:
            self._fatal = error
            unfinished = sorted(entry.job.id for entry in self._active.values())
            if unfinished:
                note = f"tasks submitted and not finished: {', '.join(unfinished)}"
                error.add_note(note)
                logger.warning("batch stopped by %s; %s", type(error).__name__, note)
        self._scope.cancel()

    async def _emit(self, event: Event) -> None:
        if self._on_event is None:
            return
        try:
            result = self._on_event(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # A progress bar's bug must not abandon paid-for jobs mid-flight.
            logger.exception("on_event handler raised; the batch goes on")
