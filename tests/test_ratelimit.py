"""Request pacing, on a ManualClock: waits are measured in virtual seconds."""

from __future__ import annotations

import itertools

import pytest

from asyncvideo import Client, Limits, ManualClock, RetryPolicy, errors
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


async def test_the_first_request_goes_out_at_once_paced_or_not(clock: ManualClock) -> None:
    assert await AdaptiveRateLimiter(clock).acquire() == 0.0
    assert await AdaptiveRateLimiter(clock, ceiling=2.0).acquire() == 0.0
    assert clock.monotonic() == 0.0


async def test_a_paced_wait_moves_the_clock_to_the_turn(clock: ManualClock) -> None:
    limiter = AdaptiveRateLimiter(clock, ceiling=4.0)
    await limiter.acquire()
    assert await limiter.acquire() == 0.25
    assert clock.monotonic() == 0.25


async def test_a_cut_never_goes_below_the_floor(clock: ManualClock) -> None:
    limiter = AdaptiveRateLimiter(clock, ceiling=0.3)
    limiter.on_throttled(await limiter.acquire())
    assert limiter.throttle_count == 1
    assert limiter.rate == pytest.approx(0.2)  # half of 0.3 is under the default floor
    # The next turn is one interval at the new rate after the cut, later than the old one.
    assert await limiter.acquire() == pytest.approx(1 / 0.2)


async def test_the_rate_estimate_counts_the_last_second_only(clock: ManualClock) -> None:
    limiter = AdaptiveRateLimiter(clock)
    for _ in range(4):
        await limiter.acquire()
    clock.advance(0.5)
    for _ in range(6):
        await limiter.acquire()
    clock.advance(1.0)
    last = await limiter.acquire()
    # The four at 0 s are over a second old; the six at 0.5 s are exactly one second old.
    limiter.on_throttled(last)
    assert limiter.rate == pytest.approx(7 * 0.5)


async def test_a_429_sent_at_the_moment_of_the_cut_counts_as_the_same_burst(
    clock: ManualClock,
) -> None:
    limiter = AdaptiveRateLimiter(clock)
    first = await limiter.acquire()
    clock.advance(0.5)
    second = await limiter.acquire()  # sent at 0.5 s, just before the first 429 lands
    limiter.on_throttled(first)  # the cut happens at 0.5 s
    rate = limiter.rate
    limiter.on_throttled(second)
    assert limiter.rate == rate
    assert limiter.throttle_count == 2


async def test_a_short_retry_after_holds_requests_past_the_paced_turn(
    clock: ManualClock,
) -> None:
    limiter = AdaptiveRateLimiter(clock)
    sent = [await limiter.acquire() for _ in range(20)]
    limiter.on_throttled(sent[0], retry_after=0.5)
    assert limiter.rate == pytest.approx(10.0)  # its own turn would be at 0.1 s
    assert await limiter.acquire() == pytest.approx(0.5)


async def test_a_zero_or_negative_retry_after_holds_nothing(clock: ManualClock) -> None:
    limiter = AdaptiveRateLimiter(clock)
    sent = [await limiter.acquire() for _ in range(20)]
    limiter.on_throttled(sent[0], retry_after=-30.0)
    assert await limiter.acquire() == pytest.approx(0.1)


async def test_one_success_adds_growth_plus_one_over_the_rate(clock: ManualClock) -> None:
    limiter = AdaptiveRateLimiter(clock)
    sent = [await limiter.acquire() for _ in range(20)]
    limiter.on_throttled(sent[0])
    limiter.on_success()
    assert limiter.rate == pytest.approx(10.0 + 0.05 + 1 / 10.0)


async def test_a_ceiling_above_a_thousand_still_paces(clock: ManualClock) -> None:
    limiter = AdaptiveRateLimiter(clock, ceiling=2000.0)
    limiter.on_success()
    assert limiter.rate == 2000.0


async def test_pacing_stops_only_past_a_thousand_per_second(clock: ManualClock) -> None:
    # floor and growth chosen so that one success lands the rate on an exact value
    limiter = AdaptiveRateLimiter(clock, floor=512.0, growth=488.0 - 1 / 512)
    limiter.on_throttled(await limiter.acquire())
    assert limiter.rate == 512.0
    limiter.on_success()
    assert limiter.rate == 1000.0  # exactly a thousand: still paced
    past = AdaptiveRateLimiter(clock, floor=512.0, growth=488.5 - 1 / 512)
    past.on_throttled(await past.acquire())
    past.on_success()
    assert past.rate is None


async def test_an_estimate_after_pacing_stopped_forgets_the_sends_before(
    clock: ManualClock,
) -> None:
    limiter = AdaptiveRateLimiter(clock, growth=500.0)
    sent = [await limiter.acquire() for _ in range(20)]
    limiter.on_throttled(sent[0])
    while limiter.rate is not None:
        limiter.on_success()
    clock.advance(0.5)
    limiter.on_throttled(await limiter.acquire())
    # one send in the last second, not the twenty from before the first cut
    assert limiter.rate == pytest.approx(0.5)


async def test_a_turn_at_the_deadline_is_given_one_after_it_reserves_nothing(
    clock: ManualClock,
) -> None:
    limiter = AdaptiveRateLimiter(clock, ceiling=1.0)
    await limiter.acquire()
    assert await limiter.acquire(deadline=1.0) == 1.0
    with pytest.raises(errors.TimeoutError, match=r"for 1\.0s"):
        await limiter.acquire(deadline=1.5)
    assert clock.monotonic() == 1.0  # refused without waiting
    assert await limiter.acquire() == 2.0  # the refused turn was not kept


async def test_the_client_wide_cap_refuses_a_turn_past_a_waits_deadline(
    make_client: ClientFactory, gateway: FakeGateway, clock: ManualClock
) -> None:
    client = make_client(
        limits=Limits(requests_per_second=0.5), retry_policy=RetryPolicy(max_attempts=1)
    )
    job = await client.submit(prompt="x")  # the cap's next turn is at 2 s
    with pytest.raises(errors.TimeoutError) as caught:
        await client._refresh(job, 1.0)  # the poller's query, due by 1 s
    assert caught.value.task_id == job.id
    assert clock.monotonic() == 0.0  # refused, not waited for
    assert gateway.stats.requests["status"] == 0


async def test_the_client_counts_every_request_it_sends(
    client: Client, gateway: FakeGateway
) -> None:
    job = await client.submit(prompt="x")
    gateway.script_failures("status", [503])
    await client.refresh(job)  # one failed attempt, one retry
    assert client.request_count == 3
    assert gateway.stats.total_requests == 3
