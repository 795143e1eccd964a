"""Webhook callbacks when tasks finish: signed, retried, and on demand dropped,
duplicated, delayed or forged.

Only tasks that asked for a callback are watched, by one sweep task that runs
while any delivery is due; each attempt is one POST on a shared session. A
delivery keeps its id across retries and is signed afresh for each attempt
(the scheme of :mod:`asyncvideo.webhooks`), as webhook senders do.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import ipaddress
import itertools
import json
import random
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
import attrs

from ..webhooks import sign
from ._config import GatewayConfig
from ._stats import GatewayStats
from ._tasks import Task

__all__ = ["WebhookSender", "is_loopback_url"]

# Real seconds between sweeps: the clock may be a ManualClock that only moves
# when a test advances it, so the sweep has to look rather than sleep until due.
_SWEEP_INTERVAL = 0.01
_DELIVERY_TIMEOUT = 5.0
_FORGED_SECRET_SUFFIX = "-forged"


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


@attrs.define
class _Delivery:
    task: Task
    delivery_id: str
    attempt: int = 0
    forged: bool = False


class WebhookSender:
    """POSTs each watched task's callback body to its ``callback_url``.

    Args:
        config: the gateway's current configuration (read at each step, so
            ``set_config`` applies to deliveries still to come).
        render: the callback body of a task, rendered as of its end.
        stats: where the ``webhook_*`` counters go.
    """

    def __init__(
        self,
        *,
        config: Callable[[], GatewayConfig],
        render: Callable[[Task], dict[str, object]],
        stats: GatewayStats,
    ) -> None:
        self._config = config
        self._render = render
        self._stats = stats
        self._rng = random.Random(config().seed)
        self._due: list[tuple[float, int, _Delivery]] = []
        self._order = itertools.count()
        self._sweeper: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def _now(self) -> float:
        return self._config().clock.monotonic()

    def _new_id(self) -> str:
        return f"dlv_{self._rng.getrandbits(96):024x}"

    def watch(self, task: Task) -> None:
        """Deliver ``task``'s callback once it ends (and a forgery now, if configured)."""
        config = self._config()
        if config.webhook_forge_rate and self._rng.random() < config.webhook_forge_rate:
            self._schedule(self._now(), _Delivery(task, self._new_id(), forged=True))
        self._schedule(task.ends_at + config.webhook_delay, _Delivery(task, self._new_id()))

    def _schedule(self, when: float, delivery: _Delivery) -> None:
        heapq.heappush(self._due, (when, next(self._order), delivery))
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        while self._due:
            now = self._now()
            while self._due and self._due[0][0] <= now:
                delivery = heapq.heappop(self._due)[2]
                attempt = asyncio.create_task(self._attempt(delivery))
                self._deliveries.add(attempt)
                attempt.add_done_callback(self._deliveries.discard)
            await asyncio.sleep(_SWEEP_INTERVAL)

    async def _attempt(self, delivery: _Delivery) -> None:
        config, stats = self._config(), self._stats
        if delivery.forged:
            stats.webhook_forged += 1
            await self._post(delivery, config, forged=True)
            return
        if delivery.attempt == 0:
            if config.webhook_drop_rate and self._rng.random() < config.webhook_drop_rate:
                stats.webhook_dropped += 1
                return
        else:
            stats.webhook_retries += 1
        twice = config.webhook_duplicate_rate and self._rng.random() < config.webhook_duplicate_rate
        ok = await self._post(delivery, config, twice=bool(twice))
        if ok:
            stats.webhook_deliveries += 1
            return
        stats.webhook_failures += 1
        if delivery.attempt < config.webhook_retries:
            backoff = config.webhook_backoff * 2**delivery.attempt
            delivery.attempt += 1
            self._schedule(self._now() + backoff, delivery)

    async def _post(
        self,
        delivery: _Delivery,
        config: GatewayConfig,
        *,
        twice: bool = False,
        forged: bool = False,
    ) -> bool:
        """One attempt (sent twice when ``twice``: the same bytes and headers); True if 2xx."""
        task = delivery.task
        assert task.callback_url is not None
        body = json.dumps(self._render(task), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        secret = config.webhook_secret
        if forged:
            # Whoever forges does not have the secret: a wrong one signs it.
            secret = (secret or "") + _FORGED_SECRET_SUFFIX
        if secret is not None:
            headers |= sign(
                body, secret, timestamp=config.clock.time(), delivery_id=delivery.delivery_id
            )
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=_DELIVERY_TIMEOUT)
            )
        ok = await self._send(task.callback_url, body, headers)
        if twice:
            self._stats.webhook_duplicated += 1
            ok = await self._send(task.callback_url, body, headers) or ok
        return ok

    async def _send(self, url: str, body: bytes, headers: dict[str, str]) -> bool:
        assert self._session is not None
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                return resp.status < 300
        except (aiohttp.ClientError, TimeoutError):
            return False

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
