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
import os
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio
import attrs
from anyio.streams.memory import MemoryObjectSendStream

from ._download import safe_filename
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
from ._store import JobStore, JournalEntry, SQLiteJournal, fingerprint
from ._transport import TRANSIENT_ERRORS
from .errors import (
    AsyncVideoError,
    AuthenticationError,
    CreateOutcomeUnknown,
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
        self._ready = asyncio.Semaphore(0)  # asyncio's: no checkpoint per pop (see Client._slot)
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
        return VideoRequest.from_fields(item)
    raise ValidationError(f"expected a VideoRequest or a mapping, got {type(item).__name__}")


async def _is_complete_video(path: str) -> bool:
    """A file a previous run finished: present and starting with an MP4 header."""
    try:
        async with await anyio.open_file(path, "rb") as handle:
            head = await handle.read(8)
    except OSError:
        return False
    return head[4:8] == b"ftyp"


def _job_from(entry: JournalEntry) -> Job:
    return Job(
        id=entry.task_id or "",
        model=entry.model,
        provider=entry.provider or "",
        state=JobState.SUCCEEDED,
        native_status=entry.state,
    )


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
        journal: str | os.PathLike[str] | None = None,
    ) -> None:
        self._client = client
        self._journal_path = journal
        self._journal: JobStore | None = None
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
        self._pending = 0  # started, outcome not yet delivered
        self._feeding_done = False
        self._all_done = anyio.Event()
        self._fatal: BaseException | None = None
        self._input_error: Exception | None = None
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
        self._client.track_batch(worker, self._scope)
        try:
            async with receive:
                async for outcome in receive:
                    yield outcome
            if worker.cancelled():
                raise AsyncVideoError("the batch was stopped because its client was closed")
            await worker
        finally:
            if not worker.done():
                self._scope.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.wait([worker])
            if worker.done() and not worker.cancelled():
                worker.exception()  # retrieved: the error, if any, was raised above

    async def _main(self, send: MemoryObjectSendStream[Outcome]) -> None:
        opened: SQLiteJournal | None = None
        if self._journal_path is not None:
            self._journal = opened = await SQLiteJournal.open(self._journal_path)
        try:
            await self._run_all(send)
        except BaseExceptionGroup as group:
            # Workers catch what they expect; anything else is one bug, shown as itself.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            if opened is not None:
                with anyio.CancelScope(shield=True):
                    await opened.close()
        if self._fatal is not None:
            raise self._fatal
        if self._input_error is not None:
            raise self._input_error
        if self._scope.cancel_called and not self._all_done.is_set():
            raise AsyncVideoError("the batch was stopped because its client was closed")

    async def _run_all(self, send: MemoryObjectSendStream[Outcome]) -> None:
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

    # -- feeding -------------------------------------------------------------------------------

    async def _feed(self, group: anyio.abc.TaskGroup) -> None:
        index = 0
        try:
            if isinstance(self._requests, AsyncIterable):
                async for item in self._requests:
                    await self._start(group, index, item)
                    index += 1
            else:
                # Read on the event loop: a slow sync iterable delays polling, so
                # feed slow sources (pipes, network) as an async iterable instead.
                for item in self._requests:
                    await self._start(group, index, item)
                    index += 1
        except Exception as exc:
            # The input broke (a bad file, a decode error): stop reading, but let
            # the jobs already paid for finish and yield their outcomes first.
            self._input_error = exc
            logger.warning("reading requests failed after %d; finishing those first", index)
        self._feeding_done = True
        self._check_done()

    async def _start(self, group: anyio.abc.TaskGroup, index: int, item: object) -> None:
        await self._job_slots.acquire()
        self._pending += 1
        group.start_soon(self._submit, index, item)

    async def _submit(self, index: int, item: object) -> None:
        request: VideoRequest | None = None
        try:
            request = _coerce(item)
            if self._journal is None:
                job = await self._client.submit(request)
            else:
                resumed = await self._resume_or_submit(index, request, self._journal)
                if isinstance(resumed, Outcome):
                    await self._finish(resumed)
                    return
                job = resumed
        except FATAL_ERRORS as exc:
            self._stop(exc)
            return
        except Exception as exc:
            placeholder = request or VideoRequest(prompt="?", model="?")
            await self._finish(Outcome(index=index, request=placeholder, error=exc))
            return
        now = self._clock.monotonic()
        entry = _Entry(index=index, request=request, job=job, submitted_at=now)
        self._active[index] = entry
        await self._emit(SubmittedEvent(index=index, job=job))
        if job.is_terminal:
            await self._settle(entry)
        else:
            self._schedule(entry, now + self._policy.next_delay(0.0, self._client.rng))

    async def _resume_or_submit(
        self, index: int, request: VideoRequest, journal: JobStore
    ) -> Job | Outcome:
        """Create only what the journal says was never sent; re-attach to the rest."""
        entry = await journal.get(index)
        if entry is None:
            key = request.idempotency_key or uuid.uuid4().hex
            request = attrs.evolve(request, idempotency_key=key)
            await journal.record_intent(index, request, key)
            job = await self._client.submit(request)
            await journal.record_job(index, job)
            return job
        if entry.fingerprint != fingerprint(request):
            raise ValidationError(
                f"the journal's request {index} differs from this one; "
                "the input changed since the journal was written: use a new journal"
            )
        if entry.path and await _is_complete_video(entry.path):
            return Outcome(
                index=index, request=request, job=_job_from(entry), path=Path(entry.path)
            )
        if entry.task_id:
            job = await self._client.get(entry.task_id, model=entry.model, provider=entry.provider)
            await journal.record_job(index, job)
            return job
        # Sent or not? Only a gateway that deduplicates by key makes a retry safe.
        if not self._client.gateway.honours_idempotency_keys:
            raise CreateOutcomeUnknown(
                f"request {index} was about to be sent when the last run stopped; "
                "check the gateway for a task before submitting it again",
                idempotency_key=entry.idempotency_key,
                cause=RuntimeError("interrupted before the task id was recorded"),
            )
        job = await self._client.submit(
            attrs.evolve(request, idempotency_key=entry.idempotency_key)
        )
        await journal.record_job(index, job)
        return job

    # -- polling -------------------------------------------------------------------------------

    def _schedule(self, entry: _Entry, due: float) -> None:
        heapq.heappush(self._timers, (due, next(self._order), entry))
        if due < self._sleeping_until and self._timer_scope is not None:
            self._timer_scope.cancel()  # the timer loop sleeps past this one: wake it

    async def _timer_loop(self) -> None:
        timers = self._timers
        # Polls due within this slack go out together: one wake-up serves many jobs
        # instead of one wake-up per jittered timer (2% of the shortest interval).
        slack = 0.02 * min(self._policy.first_delay, self._policy.interval_at(0.0))
        while True:
            now = self._clock.monotonic()
            while timers and timers[0][0] <= now + slack:
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
        return self._output_dir / f"{entry.index:06d}_{safe_filename(entry.job.id)}.mp4"

    async def _download_worker(self) -> None:
        while True:
            entry = await self._downloads.pop()
            path = self._path_for(entry)
            try:
                size = await self._client.download_file(entry.job, path)
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
        if self._journal is not None:
            await self._journal.record_outcome(
                outcome.index,
                state=outcome.job.state.value if outcome.job else None,
                path=outcome.path,
                error=outcome.error,
            )
        self._job_slots.release()
        if self._send is not None:
            await self._send.send(outcome)
        self._pending -= 1
        self._check_done()

    def _check_done(self) -> None:
        if self._feeding_done and not self._pending:
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
