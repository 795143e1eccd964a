"""``Client.generate_many``: feeding, outcomes and downloads, over a narrow protocol.

One batch runs these in one anyio task group:

- a feeder that reads requests lazily and submits each once a job slot is free;
- the client's poller (:mod:`asyncvideo._poller`), which the batch registers
  each job with; it reports changes and ends to one update task of the batch,
  which emits events and sends finished jobs to download or to their outcome;
- ``max_downloads`` download workers, which take the soonest-expiring video first.

No job owns a sleeping coroutine, and the batch has no timer of its own: its
10,000 waiting jobs are 10,000 entries in the client's one heap. The batch
knows nothing about wire formats or about ``Client``: it sees a
:class:`BatchBackend` (submit, get, download, watch), which carries the
limits and retries, and records through a :class:`~asyncvideo.JobStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ._models import Job, Limits, Outcome, VideoRequest
from ._poller import PollListener, Watch
from ._polling import PollPolicy
from .errors import AsyncVideoError

if TYPE_CHECKING:
    from ._batch_run import _Run

__all__ = ["Batch", "BatchBackend"]


class BatchBackend(Protocol):
    """What a batch needs from its client, and nothing more.

    ``Client`` provides it through a private adapter; a test or another
    front end can provide its own.
    """

    @property
    def limits(self) -> Limits:
        """``max_active_jobs`` and ``max_downloads`` shape the batch."""
        ...

    @property
    def honours_idempotency_keys(self) -> bool:
        """Whether a create interrupted before its answer may be sent again with its key."""
        ...

    async def submit(self, request: VideoRequest, /) -> Job:
        """Create one task (checked, keyed, limited, retried where safe)."""
        ...

    async def get(
        self,
        task_id: str,
        *,
        model: str,
        provider: str | None = None,
        created_by: tuple[VideoRequest, str] | None = None,
    ) -> Job:
        """Re-attach to a task a previous run created.

        ``created_by``: the request and idempotency key it was created with,
        so a job whose create carried the client's callback URL is watched as one.
        """
        ...

    async def download_to(self, job: Job, path: Path) -> int:
        """Download a succeeded job's video to exactly ``path``; returns its size."""
        ...

    def watch(
        self, job: Job, *, policy: PollPolicy, deadline: float, listener: PollListener
    ) -> Watch:
        """Register ``job`` with the client's poller."""
        ...

    def track(self, task: asyncio.Task[None], scope: anyio.CancelScope) -> None:
        """Let the client stop this batch (through ``scope``) when it closes."""
        ...


class Batch:
    """A running ``generate_many``: an async iterator of outcomes and an async context manager.

    Outcomes arrive in completion order, one per request. Nothing is sent
    before the first outcome is asked for. Leaving ``async with`` (or calling
    :meth:`aclose`) cancels what is left and waits for it: a create already
    sent is seen through to its answer, no task outlives the batch and no
    half file is left under a final name. A loop run to its end, or ended by
    an error or a cancellation, closes the batch the same way. A ``break``
    out of a plain ``async for`` closes it when the handle is dropped (at
    once on CPython), and the client's ``aclose`` waits for it; use
    ``async with`` to be sure.

    Example:
        >>> async with client.generate_many(  # doctest: +SKIP
        ...     requests, output_dir="videos"
        ... ) as outcomes:
        ...     async for outcome in outcomes:
        ...         print(outcome.index, outcome.path or outcome.error)
    """

    def __init__(self, run: _Run) -> None:
        self._run = run
        self._worker: asyncio.Task[None] | None = None
        self._receive: MemoryObjectReceiveStream[Outcome] | None = None
        self._closed = False

    def __aiter__(self) -> Batch:
        return self

    async def __anext__(self) -> Outcome:
        if self._closed:
            raise StopAsyncIteration
        receive = self._receive or self._start()
        try:
            return await receive.receive()
        except anyio.EndOfStream:
            pass
        except BaseException:
            # Cancelled while waiting for the next outcome: stop the work first.
            await self.aclose()
            raise
        await self._finish()
        raise StopAsyncIteration

    async def __aenter__(self) -> Batch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel what is left of the batch and wait until it has unwound."""
        self._closed = True
        worker = self._worker
        if worker is not None and not worker.done():
            self._run.stop()
            with anyio.CancelScope(shield=True):
                await asyncio.wait([worker])
        if worker is not None and not worker.cancelled():
            worker.exception()  # retrieved: a batch closed early has no error to show
        if self._receive is not None:
            self._receive.close()

    def __del__(self) -> None:
        # A `break` out of a plain `async for` drops the handle: stop the work then
        # rather than leave it running until the client closes.
        worker = self._worker
        if worker is not None and not worker.done():
            with contextlib.suppress(RuntimeError):  # the loop is already gone
                self._run.stop()
        if self._receive is not None:
            self._receive.close()

    def _start(self) -> MemoryObjectReceiveStream[Outcome]:
        send, receive = anyio.create_memory_object_stream[Outcome](
            self._run.backend.limits.max_active_jobs
        )
        self._receive = receive
        # The work runs in a task of its own so that no cancel scope spans the
        # caller's loop body; closing cancels it through the batch's scope.
        self._worker = asyncio.get_running_loop().create_task(self._run.main(send))
        # Marked as seen: a batch dropped unfinished has no one to tell (a loop that
        # reads on still gets the error from awaiting the task).
        self._worker.add_done_callback(_seen)
        self._run.backend.track(self._worker, self._run.scope)
        return receive

    async def _finish(self) -> None:
        """All outcomes were delivered: raise the batch's own error, if it has one."""
        self._closed = True
        worker = self._worker
        assert worker is not None
        if self._receive is not None:
            self._receive.close()
        if worker.cancelled():
            raise AsyncVideoError("the batch was stopped because its client was closed")
        await worker


def _seen(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


Batch.__module__ = "asyncvideo"
