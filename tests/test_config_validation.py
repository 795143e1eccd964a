"""Limits, PollPolicy and RetryPolicy refuse nonsense with a ConfigurationError naming it."""

from __future__ import annotations

import math
from typing import Any

import pytest

from asyncvideo import Limits, PollPolicy, RetryPolicy, Timeouts, VideoRequest
from asyncvideo.errors import ConfigurationError, ValidationError

NOT_COUNTS = [None, 2.5, 2.0, True, False, 0, -1, "4", math.nan]
NOT_TIMES = [None, True, "1", -0.5, -1, math.nan, math.inf, -math.inf]

LIMIT_COUNTS = ["max_active_jobs", "max_creates", "max_polls", "max_downloads", "max_connections"]


def check_refused(cls: type[Any], field: str, value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        cls(**{field: value})
    assert caught.value.field == field
    assert f"{cls.__name__}.{field}" in str(caught.value)
    assert repr(value) in str(caught.value)
    assert isinstance(caught.value, ValueError)  # code that caught ValueError keeps working


@pytest.mark.parametrize("field", LIMIT_COUNTS)
@pytest.mark.parametrize("value", NOT_COUNTS)
def test_limits_counts_are_positive_ints(field: str, value: object) -> None:
    check_refused(Limits, field, value)


@pytest.mark.parametrize("value", [0, -1.0, True, "4", math.nan, math.inf])
def test_limits_rate_is_a_finite_positive_number(value: object) -> None:
    check_refused(Limits, "requests_per_second", value)


def test_limits_accept_sensible_values() -> None:
    limits = Limits(max_active_jobs=1, max_creates=3, requests_per_second=0.5)
    assert (limits.max_active_jobs, limits.requests_per_second) == (1, 0.5)
    assert Limits(requests_per_second=None).requests_per_second is None
    assert Limits(requests_per_second=4).requests_per_second == 4


@pytest.mark.parametrize("value", NOT_COUNTS)
def test_retry_max_attempts_is_a_positive_int(value: object) -> None:
    check_refused(RetryPolicy, "max_attempts", value)


@pytest.mark.parametrize(
    "field", ["base_delay", "max_delay", "max_retry_after", "not_ready_window"]
)
@pytest.mark.parametrize("value", NOT_TIMES)
def test_retry_times_are_finite_and_not_negative(field: str, value: object) -> None:
    check_refused(RetryPolicy, field, value)


def test_retry_accepts_zero_delays() -> None:
    assert RetryPolicy(base_delay=0, max_delay=0, not_ready_window=0).max_delay == 0


@pytest.mark.parametrize("value", NOT_TIMES)
def test_poll_first_delay_is_finite_and_not_negative(value: object) -> None:
    check_refused(PollPolicy, "first_delay", value)


@pytest.mark.parametrize("field", ["final_interval", "deadline"])
@pytest.mark.parametrize("value", [*NOT_TIMES, 0, 0.0])
def test_poll_interval_and_deadline_are_positive(field: str, value: object) -> None:
    check_refused(PollPolicy, field, value)


@pytest.mark.parametrize("value", [*NOT_TIMES, 1, 1.5])
def test_poll_jitter_is_a_fraction(value: object) -> None:
    check_refused(PollPolicy, "jitter", value)


@pytest.mark.parametrize(
    "steps",
    [
        None,
        [(30.0, 5.0)],  # a list: the field is an immutable tuple
        ((30.0,),),
        ((30.0, 0.0),),
        ((0.0, 5.0),),
        ((30.0, math.nan),),
        ((30.0, True),),
        ((120.0, 10.0), (30.0, 5.0)),  # not increasing
    ],
)
def test_poll_steps_are_increasing_positive_pairs(steps: object) -> None:
    check_refused(PollPolicy, "steps", steps)


def test_poll_accepts_its_documented_shapes() -> None:
    policy = PollPolicy(first_delay=0, steps=(), jitter=0)
    assert policy.interval_at(1000) == policy.final_interval
    assert PollPolicy().scaled(0.01).steps == ((0.3, 0.05), (1.2, 0.1))


def test_scaling_to_zero_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="PollPolicy"):
        PollPolicy().scaled(0)


@pytest.mark.parametrize("value", [math.inf, math.nan, 0, -5, True])
def test_request_seconds_are_finite_and_positive(value: object) -> None:
    with pytest.raises(ValidationError, match="seconds"):
        VideoRequest(prompt="a cat", seconds=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["connect", "read", "request"])
@pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan, None, "10"])
def test_timeouts_are_finite_positive_numbers(field: str, value: object) -> None:
    check_refused(Timeouts, field, value)
