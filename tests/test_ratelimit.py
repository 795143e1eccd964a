"""Request pacing, on a ManualClock: waits are measured in virtual seconds."""

from __future__ import annotations

import itertools

import pytest

from asyncvideo import Client, Limits, ManualClock
from asyncvideo._ratelimit import AdaptiveRateLimiter
from asyncvideo.testing import FakeGateway

from .conftest import ClientFactory

pytestmark = pytest.mark.anyio


async def test_requests_per_second_caps_the_client(
    make_client: ClientFactory, gateway: FakeGateway, clock: ManualClock
) -> None:
    client: Client = make_client(limits=Limits(requests_per_second=4.0))
    job = await client.submit(prompt="x")
    started = clock.monotonic()
    for _ in range(9):
        await client.refresh(job)
    # Ten requests at 4 per second: the last goes out no sooner than 9/4 s after the first.
    assert clock.monotonic() - started >= 9 / 4 - 0.25 - 1e-9
    assert gateway.stats.requests["status"] == 9


async def test_a_429_halves_the_rate_once_per_burst(clock: ManualClock) -> None:
    limiter = AdaptiveRateLimiter(clock)
    sent = [await limiter.acquire() for _ in range(20)]  # 20 in the last second: ~20 rps
    assert limiter.rate is None
    limiter.on_throttled(sent[0])
    assert limiter.rate == pytest.approx(10.0)
    for sent_at in sent[1:]:  # the rest of the same burst answers 429 too
        limiter.on_throttled(sent_at)
    assert limiter.rate == pytest.approx(10.0)
    later = await limiter.acquire()
    limiter.on_throttled(later)
    assert limiter.rate == pytest.approx(5.0)


async def test_successes_restore_the_rate(clock: ManualClock) -> None:
    limiter = AdaptiveRateLimiter(clock, ceiling=8.0)
    limiter.on_throttled(await limiter.acquire())
    assert limiter.rate == pytest.approx(4.0)
    for _ in range(200):
        await limiter.acquire()
        limiter.on_success()
    assert limiter.rate == pytest.approx(8.0)  # back to the ceiling, never past it


async def test_retry_after_holds_every_request(clock: ManualClock) -> None:
    limiter = AdaptiveRateLimiter(clock)
    sent = await limiter.acquire()
    limiter.on_throttled(sent, retry_after=7.0)
    before = clock.monotonic()
    await limiter.acquire()
    assert clock.monotonic() - before >= 7.0


async def test_paced_requests_are_evenly_spaced(clock: ManualClock) -> None:
    limiter = AdaptiveRateLimiter(clock, ceiling=10.0)
    times = [await limiter.acquire() for _ in range(11)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap == pytest.approx(0.1) for gap in gaps)
