"""The one place the SDK reads time and sleeps.

Polling, retries, rate limits and deadlines all take a :class:`Clock`, so tests
and the simulator can fast-forward instead of sleeping for real.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio
import anyio.lowlevel

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Where time comes from.

    ``monotonic()`` measures intervals, ``time()`` is Unix time (for
    ``expires_at`` checks) and ``sleep()`` waits.
    """

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time`` and ``anyio.sleep``."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that jumps forward instead of sleeping.

    ``sleep(s)`` advances the clock by ``s`` at once (and yields to the event
    loop), so a 600-second deadline passes in a few milliseconds. Share one
    instance between a :class:`~asyncvideo.Client` and a
    :class:`~asyncvideo.testing.FakeGateway` and the gateway's jobs progress
    in step with the client's waits.

    Example:
        >>> clock = ManualClock(start=1_700_000_000.0)
        >>> clock.advance(2.5)
        >>> clock.time()
        1700000002.5
    """

    __slots__ = ("_now", "_start")

    def __init__(self, start: float | None = None) -> None:
        self._start = time.time() if start is None else start
        self._now = 0.0

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._start + self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` without waiting."""
        if seconds > 0:
            self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await anyio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"ManualClock(elapsed={self._now:.3f})"
