from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncvideo import PollPolicy, RetryPolicy


def test_default_schedule_matches_the_gateway_documents() -> None:
    policy = PollPolicy()
    assert policy.first_delay == 2.5
    assert policy.deadline == 600
    assert [policy.interval_at(t) for t in (0, 29.9, 30, 119.9, 120, 599)] == [
        5,
        5,
        10,
        10,
        30,
        30,
    ]


@given(st.floats(min_value=0, max_value=1000), st.integers(min_value=0, max_value=2**32))
def test_jitter_stays_within_ten_percent(elapsed: float, seed: int) -> None:
    policy = PollPolicy()
    base = policy.first_delay if elapsed <= 0 else policy.interval_at(elapsed)
    delay = policy.next_delay(elapsed, random.Random(seed))
    assert base * 0.9 <= delay <= base * 1.1


def test_scaled_policy_scales_every_time() -> None:
    scaled = PollPolicy().scaled(0.01)
    assert scaled.first_delay == pytest.approx(0.025)
    assert scaled.interval_at(0.29) == pytest.approx(0.05)
    assert scaled.interval_at(0.31) == pytest.approx(0.1)
    assert scaled.interval_at(1.3) == pytest.approx(0.3)
    assert scaled.deadline == pytest.approx(6.0)


def test_minimum_polls_counts_the_schedule() -> None:
    policy = PollPolicy()
    assert policy.minimum_polls(1.0) == 1  # first poll at 2.5 s sees it done
    assert policy.minimum_polls(10.0) == 3  # 2.5, 7.5, 12.5
    # 2.5 .. 32.5 every 5 s (7 polls), then 42.5, 52.5, 62.5 every 10 s
    assert policy.minimum_polls(60.0) == 10


def test_backoff_is_full_jitter_and_honours_retry_after() -> None:
    retry = RetryPolicy(base_delay=1.0, max_delay=8.0, max_retry_after=30.0)
    rng = random.Random(1)
    for attempt in range(10):
        assert 0 <= retry.backoff(attempt, rng) <= min(8.0, 2.0**attempt)
    assert retry.backoff(0, rng, retry_after=3.0) == 3.0
    assert retry.backoff(0, rng, retry_after=10_000.0) == 30.0  # a hostile header is capped


def test_negative_times_are_refused() -> None:
    with pytest.raises(ValueError, match="first_delay"):
        PollPolicy(first_delay=-1)
