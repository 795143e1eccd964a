"""The work of one ``generate_many`` batch; :class:`~asyncvideo.Batch` starts, stops and reads it.

See :mod:`asyncvideo._batch` for the shape: a feeder, the client's poller (the
batch registers each job with it; one update task applies what it finds), and
``max_downloads`` download workers. This module sees its client only as a
:class:`~asyncvideo._batch.BatchBackend` and its records only as a
:class:`~asyncvideo.JobStore`.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import logging
import math
import os
import sqlite3
import uuid
from collections.abc import AsyncIterable, Awaitable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio
import attrs
from anyio.streams.memory import MemoryObjectSendStream

from ._destination import check_output_dir
from ._download import is_complete_mp4, safe_filename
from ._events import (
    DownloadedEvent,
    Event,
    EventHandler,
    FailedEvent,
    SubmittedEvent,
    change_event,
    emit_event,
)
from ._logtext import printable
from ._models import Job, Outcome, VideoRequest
from ._poller import PollUpdate, Watch
from ._polling import PollPolicy
from ._states import JobState
from ._store import JobStore, JournalEntry, SQLiteJournal, fingerprint
from .errors import (
    APIError,
    AsyncVideoError,
    ConnectError,
    CreateOutcomeUnknown,
    JobFailedError,
    OutputError,
    ValidationError,
)

if TYPE_CHECKING:
    from ._batch import BatchBackend

__all__ = ["MAX_CONNECT_FAILURES", "stops_batch"]

logger = logging.getLogger("asyncvideo")

#: Creates in a row that could not reach the gateway (each after its own
#: retries) before a batch stops with one ConnectError: a gateway that is down
#: fails every request, so reporting each of them says nothing more.
MAX_CONNECT_FAILURES = 5

T = TypeVar("T")


def stops_batch(error: BaseException) -> bool:
    """Whether ``error`` fails every job of a batch, so the batch stops with it."""
    return isinstance(error, AsyncVideoError) and error.stops_batch


class _PriorityQueue(Generic[T]):
    """A heap that workers ``await pop()`` from, lowest priority value first (FIFO on ties)."""

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


@attrs.define(eq=False)
class _Entry:
    """One job in flight: its request, latest snapshot and registration with the poller."""

    index: int
    request: VideoRequest
    job: Job
    watch: Watch | None = None


def _coerce(item: object) -> VideoRequest:
    if isinstance(item, VideoRequest):
        return item
    if isinstance(item, Mapping):
        return VideoRequest.from_fields(item)
    raise ValidationError(f"expected a VideoRequest or a mapping, got {type(item).__name__}")


async def _is_complete_video(path: str) -> bool:
    """A file a previous run finished: verified as a download is (boxes add up, moov)."""
    return await anyio.to_thread.run_sync(is_complete_mp4, path)


def _job_from(entry: JournalEntry) -> Job:
    return Job(
        id=entry.task_id or "",
        model=entry.model,
        provider=entry.provider or "",
        state=JobState.SUCCEEDED,
        native_status=entry.state,
    )


class _Run:
    """The work of one batch; :class:`Batch` starts, stops and reads it."""

    def __init__(
        self,
        backend: BatchBackend,
        requests: Iterable[VideoRequest] | AsyncIterable[VideoRequest],
        *,
        output_dir: Path,
        on_event: EventHandler | None,
        timeout: float | None,
        poll_policy: PollPolicy,
        journal: str | os.PathLike[str] | None,
        store: JobStore | None,
    ) -> None:
        if journal is not None and store is not None:
            raise ValidationError("pass journal= or store=, not both", field="store")
        self.backend = backend
        self.scope = anyio.CancelScope()
        self._stopped_by_caller = False
        self._journal_path = journal
        self._store = store
        self._requests = requests
        self._output_dir = output_dir
        self._on_event = on_event
        self._policy = poll_policy
        self._deadline = poll_policy.deadline if timeout is None else timeout
        self._job_slots = anyio.Semaphore(backend.limits.max_active_jobs)
        self._updates: _PriorityQueue[tuple[_Entry, PollUpdate]] = _PriorityQueue()
        self._downloads: _PriorityQueue[_Entry] = _PriorityQueue()
        self._active: dict[int, _Entry] = {}
        self._pending = 0  # started, outcome not yet delivered
        self._feeding_done = False
        self._all_done = anyio.Event()
        self._fatal: BaseException | None = None
        self._input_error: Exception | None = None
        self._connect_failures = 0  # creates in a row that never reached the gateway
        self._store_error: OutputError | None = None  # the first journal write that failed
        self._unrecorded: list[str] = []  # task ids the journal may not hold
        self._send: MemoryObjectSendStream[Outcome] | None = None

    async def main(self, send: MemoryObjectSendStream[Outcome]) -> None:
        self._send = send
        opened: SQLiteJournal | None = None
        try:
            # Before any create (and before the journal, which may live there).
            await check_output_dir(self._output_dir)
            if self._journal_path is not None:
                opened = await self._open_journal(self._journal_path)
                self._store = opened
            await self._run_all(send)
        except BaseExceptionGroup as group:
            # Workers catch what they expect; anything else is one bug, shown as itself.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            send.close()  # however the batch ends, the reader of outcomes wakes up
            for entry in self._active.values():
                if entry.watch is not None:
                    entry.watch.cancel()  # the client's poller forgets this batch's jobs
            if opened is not None:
                with anyio.CancelScope(shield=True):
                    await opened.close()
        if self._fatal is not None:
            raise self._fatal
        if self._store_error is not None:
            if self._unrecorded:
                self._store_error.add_note(
                    f"tasks the journal may not hold: {', '.join(self._unrecorded)}"
                )
            raise self._store_error
        if self._input_error is not None:
            raise self._input_error
        if self.scope.cancel_called and not self._stopped_by_caller:
            raise AsyncVideoError("the batch was stopped because its client was closed")

    @staticmethod
    async def _open_journal(path: str | os.PathLike[str]) -> SQLiteJournal:
        try:
            return await SQLiteJournal.open(path)
        except OutputError:
            raise  # the disk: already names the path (and stops the batch before any create)
        except (OSError, sqlite3.Error) as exc:
            # Before any create: a journal that cannot be kept must not let clips be paid for.
            raise ValidationError(
                f"cannot use {os.fspath(path)!r} as the batch's journal: {exc}", field="journal"
            ) from exc

    def stop(self) -> None:
        """The caller is done with the batch: cancel what is left, quietly."""
        self._stopped_by_caller = True
        self.scope.cancel()

    async def _run_all(self, send: MemoryObjectSendStream[Outcome]) -> None:
        async with send:
            with self.scope:
                async with anyio.create_task_group() as group:
                    group.start_soon(self._update_worker)
                    for _ in range(self.backend.limits.max_downloads):
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
                    if not await self._start(group, index, item):
                        break
                    index += 1
            else:
                # Read on the event loop: a slow sync iterable delays polling, so
                # feed slow sources (pipes, network) as an async iterable instead.
                for item in self._requests:
                    if not await self._start(group, index, item):
                        break
                    index += 1
        except Exception as exc:
            # The input broke (a bad file, a decode error): stop reading, but let
            # the jobs already paid for finish and yield their outcomes first.
            self._input_error = exc
            logger.warning("reading requests failed after %d; finishing those first", index)
        self._feeding_done = True
        self._check_done()

    async def _start(self, group: anyio.abc.TaskGroup, index: int, item: object) -> bool:
        """Start request ``index``; False once the journal failed (nothing more is created)."""
        await self._job_slots.acquire()
        if self._store_error is not None:
            self._job_slots.release()
            return False
        self._pending += 1
        group.start_soon(self._submit, index, item)
        return True

    async def _submit(self, index: int, item: object) -> None:
        request: VideoRequest | None = None
        try:
            request = _coerce(item)
            if self._store is None:
                job = await self.backend.submit(request)
            else:
                resumed = await self._resume_or_submit(index, request, self._store)
                if isinstance(resumed, Outcome):
                    await self._finish(resumed)
                    return
                job = resumed
        except Exception as exc:
            if stops_batch(exc):
                self._stop(exc)
                return
            if self._unreachable(exc):
                return
            placeholder = request or VideoRequest(prompt="?", model="?")
            await self._finish(Outcome(index=index, request=placeholder, error=exc))
            return
        self._connect_failures = 0
        entry = _Entry(index=index, request=request, job=job)
        self._active[index] = entry
        await self._emit(SubmittedEvent(index=index, job=job))
        if job.is_terminal:
            await self._settle(entry)
        else:
            entry.watch = self.backend.watch(
                job,
                policy=self._policy,
                deadline=self._deadline,
                listener=functools.partial(self._on_update, entry),
            )

    async def _resume_or_submit(
        self, index: int, request: VideoRequest, store: JobStore
    ) -> Job | Outcome:
        """Create only what the store says was never sent; re-attach to the rest."""
        entry = await self._journal(store.get(index))
        if entry is None:
            key = request.idempotency_key or uuid.uuid4().hex
            request = attrs.evolve(request, idempotency_key=key)
            await self._journal(store.record_intent(index, request, key))
            if self._store_error is not None:  # failed meanwhile: create nothing more
                raise self._store_error
            job = await self.backend.submit(request)
            await self._record_job(store, index, job)
            return job
        if entry.fingerprint != fingerprint(request):
            raise ValidationError(
                f"the journal's request {index} differs from this one; "
                "the input changed since the journal was written: use a new journal"
            )
        if entry.path and await _is_complete_video(entry.path):
            job = entry.job or _job_from(entry)
            return Outcome(index=index, request=request, job=job, path=Path(entry.path))
        if entry.task_id:
            job = await self.backend.get(
                entry.task_id,
                model=entry.model,
                provider=entry.provider,
                created_by=(request, entry.idempotency_key),
            )
            await self._record_job(store, index, job)
            return job
        # Sent or not? Only a gateway that deduplicates by key makes a retry safe.
        if not self.backend.honours_idempotency_keys:
            raise CreateOutcomeUnknown(
                f"request {index} was about to be sent when the last run stopped; "
                "check the gateway for a task before submitting it again",
                idempotency_key=entry.idempotency_key,
                cause=RuntimeError("interrupted before the task id was recorded"),
            )
        job = await self.backend.submit(
            attrs.evolve(request, idempotency_key=entry.idempotency_key)
        )
        await self._record_job(store, index, job)
        return job

    # -- what the poller found -----------------------------------------------------------------

    def _on_update(self, entry: _Entry, update: PollUpdate) -> None:
        # The poller is the client's, shared with other batches and waits: never block it.
        self._updates.push(0.0, (entry, update))

    async def _update_worker(self) -> None:
        # One task, in order: a job's events arrive as its polls saw them.
        while True:
            entry, update = await self._updates.pop()
            await self._apply(entry, update)

    async def _apply(self, entry: _Entry, update: PollUpdate) -> None:
        job, previous = update.job, update.previous
        entry.job = job
        # What the poll saw first, even when it is the last (a timeout): as a single job's wait.
        await self._emit(change_event(entry.index, job, previous))
        if update.error is not None:
            if stops_batch(update.error):
                self._stop(update.error)
            else:
                await self._finish_entry(entry, error=update.error)
            return
        if job.is_terminal:
            await self._settle(entry)

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
                size = await self.backend.download_to(entry.job, path)
            except Exception as exc:
                # Always this clip's error, never the batch's: a CDN's 401 or 403 is an
                # expired signature, not a bad key (that shows on the next create or poll).
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
        if self._store is not None:
            try:
                await self._store.record_outcome(
                    outcome.index,
                    state=outcome.job.state.value if outcome.job else None,
                    path=outcome.path,
                    error=outcome.error,
                )
            except Exception as exc:
                # The outcome is still delivered: the clip is there, only its row is not.
                self._journal_failed(exc, outcome.job)
        self._job_slots.release()
        if self._send is not None:
            await self._send.send(outcome)
        self._pending -= 1
        self._check_done()

    def _check_done(self) -> None:
        if self._feeding_done and not self._pending:
            self._all_done.set()

    # -- failures that end the batch ------------------------------------------------------------

    async def _journal(self, write: Awaitable[T]) -> T:
        """A journal call before a create; its failure is this request's error, and the batch's."""
        try:
            return await write
        except Exception as exc:
            raise self._journal_failed(exc, None) from exc

    async def _record_job(self, store: JobStore, index: int, job: Job) -> None:
        """Keep a created task's id; if the journal cannot, the task still goes on."""
        try:
            await store.record_job(index, job)
        except Exception as exc:
            # Paid for: polled and downloaded all the same, and named in the batch's error.
            self._journal_failed(exc, job)

    def _journal_failed(self, error: Exception, job: Job | None) -> OutputError:
        """The store failed: create nothing more, see the jobs in flight through, then raise.

        A journal that cannot be written breaks the promise that a re-run never pays
        twice, so no new task is created; the tasks already paid for are still
        polled, downloaded and delivered, and the batch then raises one
        :class:`OutputError` naming the tasks the journal may not hold.
        """
        if job is not None and job.id not in self._unrecorded:
            self._unrecorded.append(job.id)
        if self._store_error is None:
            where = os.fspath(self._journal_path) if self._journal_path is not None else "<store>"
            self._store_error = OutputError(
                f"the batch's journal failed ({type(error).__name__}: {error}); "
                "no task was created after that, and those in flight were finished",
                path=where,
            )
            self._store_error.__cause__ = error
            logger.error("the journal failed; creating no more tasks: %s", error)
        return self._store_error

    def _unreachable(self, error: Exception) -> bool:
        """Count creates that never reached the gateway; stop the batch at the limit."""
        if isinstance(error, APIError):
            self._connect_failures = 0  # it answered: reachable
            return False
        if not isinstance(error, ConnectError):
            return False
        self._connect_failures += 1
        if self._connect_failures < MAX_CONNECT_FAILURES:
            return False
        stop = ConnectError(
            f"the gateway could not be reached for {MAX_CONNECT_FAILURES} creates in a row, "
            f"so the batch stopped (last: {error})"
        )
        stop.__cause__ = error
        self._stop(stop)
        return True

    def _stop(self, error: BaseException) -> None:
        """Stop the whole batch with ``error`` (bad key, no quota, no permission)."""
        if self._fatal is None:
            self._fatal = error
            unfinished = sorted(entry.job.id for entry in self._active.values())
            if unfinished:
                note = f"tasks submitted and not finished: {', '.join(unfinished)}"
                error.add_note(note)
                logger.warning("batch stopped by %s; %s", type(error).__name__, printable(note))
        self.scope.cancel()

    async def _emit(self, event: Event | None) -> None:
        await emit_event(self._on_event, event)
