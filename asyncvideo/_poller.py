"""The one poller of a client: a timer heap that every ``wait``, ``generate`` and batch uses.

A job being waited for is an entry in a heap keyed by its next poll time, not
a sleeping coroutine: 1,000 concurrent ``wait()`` calls are 1,000 entries and
one task, which sleeps until the soonest is due. Due entries go to at most
``max_polls`` short-lived workers, which query the job once through the
client's ``refresh`` and either schedule the next poll (by the entry's
:class:`PollPolicy`), or tell the entry's listener how it ended. The workers
exit when nothing is due, so an idle client with many waiters has one task.

This is the only poll loop in the SDK: transient errors (timeouts, 5xx, 429,
unreadable answers) mean "poll again at the next scheduled time", any other
error is that job's final answer, and each entry keeps its own deadline.

The deadline holds against work in flight: a poll's request retries end by
it (the refresh is given it), and on a real clock the timer also wakes at it
and cancels a poll still in flight (a stalled status endpoint), so
``wait(timeout=2)`` ends at about 2 s. The poll that goes out *at* the
deadline, the last look, gets a short grace (:func:`_last_look`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import attrs

from ._clock import Clock, ManualClock
from ._logtext import printable
from ._models import Job
from ._polling import PollPolicy
from ._retry import TRANSIENT_ERRORS
from .errors import AsyncVideoError, JobTimeoutError, ValidationError

__all__ = ["PollListener", "PollUpdate", "Poller", "Watch"]

logger = logging.getLogger("asyncvideo")

#: Once a job has been polled, the step interval applies, never the first delay again.
_AFTER_FIRST_POLL = 1e-9
#: The longest grace of the poll sent at the deadline (see :func:`_last_look`).
_MAX_LAST_LOOK = 1.0


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None (a sync framework's worker thread)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _last_look(timeout: float) -> float:
    """Seconds a poll sent at (or just before) the deadline may still take: 5%, at most 1 s."""
    return min(_MAX_LAST_LOOK, 0.05 * timeout)


@attrs.frozen
class PollUpdate:
    """What one poll (or the deadline) found out about a watched job.

    Attributes:
        job: the latest snapshot.
        previous: the snapshot before this poll (the same as ``job`` at the deadline).
        error: the job's final error: ``JobTimeoutError`` at the deadline, or a
            final API error such as 401 or 404. ``None`` otherwise.
    """

    job: Job
    previous: Job
    error: BaseException | None = None

    @property
    def final(self) -> bool:
        """The watch is over: the job is terminal or ended in ``error``."""
        return self.error is not None or self.job.is_terminal


class PollListener(Protocol):
    """Told about each change a poll finds, and once about the end.

    Called synchronously on the poller's task: it must not block. Anything
    slow (events, files, backpressure) belongs to the listener's owner, which
    can hand the update to a task of its own.
    """

    def __call__(self, update: PollUpdate, /) -> None: ...


@attrs.define(eq=False)
class Watch:
    """One registration with the poller. :meth:`cancel` ends it without another poll."""

    poller: Poller
    job: Job
    policy: PollPolicy
    deadline: float
    started: float
    listener: PollListener
    #: polls due this close to the soonest go out in the same wake-up
    slack: float
    done: bool = False
    #: the next poll is the one at the deadline: it goes out on time, never early
    #: (an early one would find the deadline not reached and poll again at once)
    at_deadline: bool = False
    #: in the heap (not in a worker's hands): cancelling leaves a stale entry there
    scheduled: bool = False
    #: set while a worker polls it: cancelling the watch cancels that request
    polling: anyio.CancelScope | None = None
    #: while polling: the clock time at which the poll in flight is cut (the deadline)
    cut_at: float = math.inf
    #: the job's create carried a callback URL: polled at the policy's callback_interval
    callback: bool = False
    #: the heap entry that counts (its order number); older entries of a woken watch are stale
    entry: int = -1
    #: when that entry is due
    due: float = math.inf
    #: woken while a poll was in flight: poll again at once if that poll finds it unfinished
    recheck: bool = False
    #: when the latest poll a callback asked for goes (or went) out
    woken_at: float = -math.inf

    def cancel(self) -> None:
        """Stop watching: the job is not polled again and the listener hears nothing more.

        Other watches are not disturbed; cancelling a finished watch does nothing.
        """
        self.poller._cancel(self)


class Poller:
    """A client-wide timer heap for status polls. One per :class:`~asyncvideo.Client`.

    The timer task starts on the first :meth:`watch`, ends when nothing is
    left to watch (the next watch starts it again) and is stopped by
    :meth:`aclose`. Time comes from the client's clock; on a
    :class:`~asyncvideo.ManualClock`, where a sleep moves time at once, the
    poller lets the polls in flight land before it sleeps, so that no poll
    sees time leap ahead of it and a virtual-time test counts exact polls.
    On a real clock a slow poll never holds up the others.

    Args:
        refresh: one status query, given the clock time its retries must end
            by (the client's ``refresh``, which applies ``Limits.max_polls``
            and the request retries).
        clock: where time comes from.
        rng: the client's seeded random source, for the policy's jitter.
        max_polls: at most this many polls in flight (``Limits.max_polls``).

    Example:
        >>> async def main(poller: Poller, job: Job) -> None:  # doctest: +SKIP
        ...     watch = poller.watch(job, policy=PollPolicy(), deadline=600, listener=print)
    """

    def __init__(
        self,
        *,
        refresh: Callable[[Job, float | None], Awaitable[Job]],
        clock: Clock,
        rng: random.Random,
        max_polls: int,
    ) -> None:
        self._refresh = refresh
        self._clock = clock
        self._rng = rng
        self._max_workers = max_polls
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._stale = 0  # cancelled entries still in the heap
        self._due: deque[Watch] = deque()
        self._live: set[Watch] = set()
        #: (provider, task id) -> its live watches, for :meth:`wake`
        self._by_task: dict[tuple[str, str], set[Watch]] = {}
        self._task: asyncio.Task[None] | None = None
        #: the loop the timer runs on: a wake from another thread is handed to it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: set[asyncio.Task[None]] = set()
        self._busy = 0  # workers alive, each with a poll in flight or about to be
        self._in_flight: set[Watch] = set()  # being polled, each to be cut at its cut_at
        self._landed = asyncio.Event()  # no poll in flight (used on a ManualClock)
        self._landed.set()
        self._sleeping_until = math.inf
        self._wake: anyio.CancelScope | None = None
        self._settle_before_sleep = isinstance(clock, ManualClock)
        self._closed = False
        #: how many times the timer task was started (tests check it stays 1)
        self.starts = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop this poller runs on (None until its first watch)."""
        return self._loop

    def __len__(self) -> int:
        """Jobs being watched (scheduled or being polled now)."""
        return len(self._live)

    @property
    def scheduled(self) -> int:
        """Entries waiting in the heap for their next poll."""
        return len(self._heap) - self._stale

    # -- registering -----------------------------------------------------------------------

    def watch(
        self,
        job: Job,
        *,
        policy: PollPolicy,
        deadline: float,
        listener: PollListener,
        callback: bool = False,
    ) -> Watch:
        """Poll ``job`` by ``policy`` until it is terminal or ``deadline`` seconds pass.

        The listener hears about every change of state or progress and, last,
        the final update (terminal job, ``JobTimeoutError`` or a final error).
        A job that is already terminal is not polled: the listener hears at once.

        Args:
            job: the snapshot to start from.
            policy: the schedule (first delay, intervals, jitter).
            deadline: seconds from now after which the wait ends in ``JobTimeoutError``.
            listener: called on the poller's task; must not block.
            callback: the job's create carried a callback URL: poll only every
                ``policy.callback_interval`` and rely on :meth:`wake`.

        Raises:
            AsyncVideoError: the client was closed.
        """
        if self._closed:
            raise AsyncVideoError("the client is closed; it polls no more")
        if math.isnan(deadline):
            raise ValidationError("a wait's timeout must be a number of seconds, not NaN")
        now = self._clock.monotonic()
        slack = 0.02 * min(policy.first_delay, policy.interval_at(0.0))
        watch = Watch(self, job, policy, deadline, now, listener, slack, callback=callback)
        self._live.add(watch)
        self._by_task.setdefault((job.provider, job.id), set()).add(watch)
        if job.is_terminal:
            self._end(watch, PollUpdate(job, job))
        elif deadline <= 0:
            self._end(watch, PollUpdate(job, job, JobTimeoutError(job, deadline)))
        else:
            delay = policy.next_delay(0.0, self._rng, callback=callback)
            self._schedule_next(watch, now, delay, deadline)
            self._ensure_running()
        return watch

    def wake(self, provider: str, task_id: str) -> bool:
        """Poll the watched job ``(provider, task_id)`` now (a callback said it changed).

        The poll is the usual one: its answer, not the callback, is what the
        listener hears. Waking a job whose poll is already due or in flight
        adds no request (if the poll in flight still finds the job unfinished,
        one more follows at once), so a burst of duplicate callbacks costs
        one status request. Woken polls of one job are at least the policy's
        first interval (``interval_at(0)``, 5 s) apart: a sender that keeps
        calling back about an unfinished job gets it polled no more often
        than a young job without callbacks is, and a real callback after a
        storm waits at most that long.

        Call it on the poller's event loop (:attr:`loop`); ``Client.notify``
        hands a call from another thread over to it.

        Returns:
            True if the job is being watched (and is polled now or already
            is); False if it is not (unknown, or its watch has ended).
        """
        watches = self._by_task.get((provider, task_id))
        if not watches:
            return False
        now = self._clock.monotonic()
        for watch in watches:
            if watch in self._in_flight:
                watch.recheck = True
                continue
            due = self._woken_due(watch, now)
            if watch.scheduled and watch.due > due + watch.slack:
                self._stale += 1  # its old entry stays in the heap until popped
                watch.at_deadline = False
                watch.woken_at = due
                self._schedule(watch, due)
            # else: due by then anyway, or popped and waiting for a worker
        return True

    @staticmethod
    def _woken_due(watch: Watch, now: float) -> float:
        """When a poll a callback asks for may go: now, unless one went too recently."""
        return max(now, watch.woken_at + watch.policy.interval_at(0.0))

    def _schedule_next(self, watch: Watch, now: float, delay: float, remaining: float) -> None:
        watch.at_deadline = delay >= remaining
        self._schedule(watch, now + min(delay, remaining))

    def _schedule(self, watch: Watch, due: float) -> None:
        watch.scheduled = True
        watch.entry = next(self._order)
        watch.due = due
        heapq.heappush(self._heap, (due, watch.entry, watch))
        if due < self._sleeping_until and self._wake is not None:
            self._wake.cancel()  # the timer sleeps past this one: wake it

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self.starts += 1
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._run())

    # -- the timer -------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._timer()
        finally:
            # Stopped (aclose, or the loop shutting down): no watch may wait forever.
            self._fail_all(AsyncVideoError("the client's poller stopped; the client was closed"))

    async def _timer(self) -> None:
        heap = self._heap
        while True:
            if self._settle_before_sleep:
                await self._landed.wait()
            now = self._clock.monotonic()
            while heap:
                due, entry, watch = heap[0]
                if watch.done or entry != watch.entry:
                    heapq.heappop(heap)
                    self._stale -= 1
                    continue
                if due > now + (0.0 if watch.at_deadline else watch.slack):
                    break
                heapq.heappop(heap)
                watch.scheduled = False
                self._due.append(watch)
            self._cut_overdue(now)
            self._start_workers()
            if not self._live:
                return  # nothing to watch: no idle task; the next watch starts a new one
            if self._settle_before_sleep and self._busy:
                continue  # let them land first (see the class docstring)
            cuts = (watch.cut_at for watch in self._in_flight)
            self._sleeping_until = min(heap[0][0] if heap else math.inf, *cuts, math.inf)
            self._wake = anyio.CancelScope()
            with self._wake:
                if self._sleeping_until < math.inf:
                    await self._clock.sleep(self._sleeping_until - now)
                else:
                    await anyio.sleep_forever()
            self._wake = None
            self._sleeping_until = math.inf

    def _start_workers(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(min(len(self._due), self._max_workers - self._busy)):
            # Counted as busy now, before it first runs, so the timer never sees an
            # empty moment between handing a poll out and the poll being sent.
            self._busy += 1
            self._landed.clear()
            self._workers.add(loop.create_task(self._worker()))

    async def _worker(self) -> None:
        try:
            # No await between the last look at the queue and leaving: a worker
            # never exits with a due poll left behind.
            while self._due:
                watch = self._due.popleft()
                if not watch.done:
                    self._start_poll(watch)
                    try:
                        with anyio.CancelScope() as watch.polling:
                            await self._poll(watch)
                    finally:
                        watch.polling = None
                        self._in_flight.discard(watch)
        finally:
            worker = asyncio.current_task()
            if worker is not None:
                self._workers.discard(worker)
            self._busy -= 1
            if not self._busy:
                self._landed.set()

    def _start_poll(self, watch: Watch) -> None:
        now = self._clock.monotonic()
        watch.recheck = False
        watch.cut_at = max(watch.started + watch.deadline, now + _last_look(watch.deadline))
        self._in_flight.add(watch)
        if watch.cut_at < self._sleeping_until and self._wake is not None:
            self._wake.cancel()  # the timer sleeps past this poll's deadline: wake it

    def _cut_overdue(self, now: float) -> None:
        """End the watches whose poll is still in flight at their deadline."""
        for watch in [watch for watch in self._in_flight if watch.cut_at <= now]:
            self._in_flight.discard(watch)
            timeout = JobTimeoutError(watch.job, watch.deadline)
            self._end(watch, PollUpdate(watch.job, watch.job, timeout))
            if watch.polling is not None:
                watch.polling.cancel()

    # -- one poll: the SDK's only poll loop body -------------------------------------------

    async def _poll(self, watch: Watch) -> None:
        previous = watch.job
        try:
            job = await self._refresh(previous, watch.cut_at)
        except TRANSIENT_ERRORS as exc:
            logger.warning(
                "poll of task %s failed, will poll again: %s",
                printable(previous.id),
                printable(exc),
            )
            job = previous
        except Exception as exc:
            self._end(watch, PollUpdate(previous, previous, exc))
            return
        if watch.done:
            return  # cancelled while the query was in flight
        if logger.isEnabledFor(logging.DEBUG):  # printable() costs, per poll, even unlogged
            logger.debug(
                "polled task %s: %s, progress %s", printable(job.id), job.state.value, job.progress
            )
        watch.job = job
        if job.is_terminal:
            self._end(watch, PollUpdate(job, previous))
            return
        now = self._clock.monotonic()
        elapsed = now - watch.started
        remaining = watch.deadline - elapsed
        if remaining <= 0:
            self._end(watch, PollUpdate(job, previous, JobTimeoutError(job, watch.deadline)))
            return
        if job.state is not previous.state or job.progress != previous.progress:
            self._tell(watch, PollUpdate(job, previous))
        if watch.recheck:
            # A callback arrived while this poll was out: look again, as a woken poll.
            watch.woken_at = self._woken_due(watch, now)
            delay = watch.woken_at - now
        else:
            delay = watch.policy.next_delay(
                max(elapsed, _AFTER_FIRST_POLL), self._rng, callback=watch.callback
            )
        self._schedule_next(watch, now, delay, remaining)

    def _end(self, watch: Watch, update: PollUpdate) -> None:
        if watch.done:
            return
        watch.done = True
        self._forget(watch)
        self._tell(watch, update)

    def _tell(self, watch: Watch, update: PollUpdate) -> None:
        try:
            watch.listener(update)
        except Exception:
            # One listener's bug must not stop the polls of every other job.
            logger.exception("a poll listener raised; polling goes on")

    # -- cancelling and closing ------------------------------------------------------------

    def _cancel(self, watch: Watch) -> None:
        if watch.done:
            return
        watch.done = True
        self._forget(watch)
        if watch.polling is not None:
            watch.polling.cancel()  # a query nobody waits for any more: stop it
        if watch.scheduled:  # its entry stays in the heap, dead, until popped or swept
            self._stale += 1
            # Many waiters leaving at once (a web app shutting down) must not leave
            # the heap full of dead entries: rebuild it once they are half of it.
            if self._stale > 64 and self._stale * 2 > len(self._heap):
                self._heap[:] = [
                    item for item in self._heap if not item[2].done and item[1] == item[2].entry
                ]
                heapq.heapify(self._heap)
                self._stale = 0

    def _forget(self, watch: Watch) -> None:
        self._live.discard(watch)
        key = (watch.job.provider, watch.job.id)
        same_task = self._by_task.get(key)
        if same_task is not None:
            same_task.discard(watch)
            if not same_task:
                del self._by_task[key]
        if not self._live and self._wake is not None:
            self._wake.cancel()  # let the timer see there is nothing left and end

    def _fail_all(self, error: AsyncVideoError) -> None:
        pending = list(self._live)
        self._heap.clear()
        self._due.clear()
        self._stale = 0
        for watch in pending:
            self._end(watch, PollUpdate(watch.job, watch.job, error))

    async def aclose(self) -> None:
        """Stop the timer and the polls in flight; every remaining watch ends in an error."""
        self._closed = True
        tasks = [*self._workers, *([self._task] if self._task else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(tasks)
        self._fail_all(AsyncVideoError("the client was closed"))
