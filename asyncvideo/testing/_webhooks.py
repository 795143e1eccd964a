"""Best-effort webhook callbacks when tasks finish.

Only tasks that asked for a callback are watched, by one sweep task that runs
while any are pending; each delivery is one POST on a shared session.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import ipaddress
import itertools
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp

from ._stats import GatewayStats
from ._tasks import Task

__all__ = ["WebhookSender", "is_loopback_url"]

# Real seconds between sweeps: the clock may be a ManualClock that only moves
# when a test advances it, so the sweep has to look rather than sleep until due.
_SWEEP_INTERVAL = 0.01
_DELIVERY_TIMEOUT = 5.0


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` is http(s) on this machine: the fake never calls out further."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


class WebhookSender:
    """POSTs each watched task's final body to its ``callback_url``."""

    def __init__(
        self,
        *,
        now: Callable[[], float],
        render: Callable[[Task], dict[str, object]],
        stats: GatewayStats,
    ) -> None:
        self._now = now
        self._render = render
        self._stats = stats
        self._due: list[tuple[float, int, Task]] = []
        self._order = itertools.count()
        self._sweeper: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def watch(self, task: Task) -> None:
        heapq.heappush(self._due, (task.ends_at, next(self._order), task))
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        while self._due:
            now = self._now()
            while self._due and self._due[0][0] <= now:
                task = heapq.heappop(self._due)[2]
                delivery = asyncio.create_task(self._deliver(task))
                self._deliveries.add(delivery)
                delivery.add_done_callback(self._deliveries.discard)
            await asyncio.sleep(_SWEEP_INTERVAL)

    async def _deliver(self, task: Task) -> None:
        assert task.callback_url is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=_DELIVERY_TIMEOUT)
            )
        try:
            async with self._session.post(task.callback_url, json=self._render(task)) as resp:
                ok = resp.status < 300
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            self._stats.webhook_deliveries += 1
        else:
            self._stats.webhook_failures += 1

    async def close(self) -> None:
        pending = [t for t in (self._sweeper, *self._deliveries) if t is not None]
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._due.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
