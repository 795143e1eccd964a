"""Shared fixtures: async tests run on anyio's pytest plugin, asyncio backend."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    # aiohttp only runs on asyncio.
    return "asyncio"


import asyncio  # noqa: E402
from collections.abc import AsyncIterator, Callable  # noqa: E402
from typing import Any  # noqa: E402

import anyio.lowlevel  # noqa: E402

from asyncvideo import Client, ManualClock, RetryPolicy  # noqa: E402
from asyncvideo.testing import FakeGateway  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
ClientFactory = Callable[..., Client]


@pytest.fixture
def clock() -> ManualClock:
    """Shared by the gateway and the client: waits fast-forward instead of sleeping."""
    return ManualClock()


@pytest.fixture
async def gateway(clock: ManualClock) -> AsyncIterator[FakeGateway]:
    async with FakeGateway(clock=clock, durations=(20.0, 40.0), video_bytes=48 * 1024) as gw:
        yield gw


@pytest.fixture
async def make_client(gateway: FakeGateway, clock: ManualClock) -> AsyncIterator[ClientFactory]:
    """Clients on the gateway's clock, with retries that back off in virtual time."""
    made: list[Client] = []

    def factory(**overrides: Any) -> Client:
        options: dict[str, Any] = {
            "api_key": gateway.api_key,
            "base_url": gateway.url,
            "clock": clock,
            "retry_policy": RetryPolicy(base_delay=0.5, max_delay=4.0),
            "seed": 1,
        }
        options.update(overrides)
        client = Client(**options)
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.aclose()


@pytest.fixture
def client(make_client: ClientFactory) -> Client:
    return make_client()


class HeldClock(ManualClock):
    """A ManualClock whose ``sleep`` waits until :meth:`advance` moves time past its end.

    The poller then sleeps as it does in production, so a webhook callback has a
    sleep to cut short (a plain ManualClock would jump to the next poll at once).
    """

    def __init__(self) -> None:
        super().__init__(start=1_700_000_000.0)
        self._moved = asyncio.Event()

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def sleep(self, seconds: float) -> None:
        end = self.monotonic() + seconds
        while self.monotonic() < end:
            await self._moved.wait()
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def held() -> HeldClock:
    return HeldClock()
