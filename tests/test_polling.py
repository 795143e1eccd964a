from __future__ import annotations

import math
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


def test_the_first_delay_is_only_for_the_first_poll() -> None:
    policy = PollPolicy(jitter=0.0)
    assert policy.next_delay(0.0) == 2.5
    assert policy.next_delay(1e-9) == 5.0
    assert policy.next_delay(0.0, random.Random(1)) == 2.5  # no jitter: exact


def test_without_a_random_source_there_is_no_jitter() -> None:
    assert PollPolicy().next_delay(40.0) == 10.0


def test_minimum_polls_counts_a_poll_at_the_moment_the_job_finishes() -> None:
    assert PollPolicy().minimum_polls(7.5) == 2  # the poll at 7.5 s sees it done


def test_minimum_polls_is_bounded_for_a_job_that_never_ends() -> None:
    assert PollPolicy().minimum_polls(math.inf) == 100_000


def test_retry_policy_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.base_delay, policy.max_delay) == (4, 0.5, 20.0)
    assert (policy.max_retry_after, policy.not_ready_window) == (120.0, 60.0)
    assert (policy.min_download_rate, policy.download_rate_window) == (1024.0, 30.0)


def test_backoff_is_one_uniform_draw_up_to_the_doubling_bound() -> None:
    retry = RetryPolicy(base_delay=1.0, max_delay=8.0)
    for attempt, bound in enumerate([1.0, 2.0, 4.0, 8.0, 8.0]):
        assert retry.backoff(attempt, random.Random(attempt)) == random.Random(attempt).uniform(
            0.0, bound
        )


def test_an_unusable_retry_after_falls_back_to_backoff_or_zero() -> None:
    retry = RetryPolicy(base_delay=1.0, max_delay=8.0)
    assert retry.backoff(0, random.Random(3), retry_after=-5.0) == 0.0
    assert retry.backoff(0, random.Random(3), retry_after=0.5) == 0.5
    infinite = retry.backoff(0, random.Random(3), retry_after=math.inf)
    assert infinite == random.Random(3).uniform(0.0, 1.0)


def test_scaled_retry_policy_scales_every_time_and_nothing_else() -> None:
    scaled = RetryPolicy().scaled(0.5)
    assert scaled == RetryPolicy(
        base_delay=0.25,
        max_delay=10.0,
        max_retry_after=60.0,
        not_ready_window=30.0,
        download_rate_window=15.0,
    )


class EdgeDraws(random.Random):
    """Always draws one end of the range asked for: the extremes of the jitter, exactly."""

    def __init__(self, *, top: bool) -> None:
        super().__init__(0)
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self.top else a


def test_jitter_spreads_a_delay_by_the_fraction_either_way() -> None:
    policy = PollPolicy()
    assert policy.next_delay(40.0, EdgeDraws(top=True)) == pytest.approx(11.0)
    assert policy.next_delay(40.0, EdgeDraws(top=False)) == pytest.approx(9.0)
