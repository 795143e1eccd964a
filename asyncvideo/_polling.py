"""Poll and retry schedules: pure functions of elapsed time and attempt number."""

from __future__ import annotations

import math
import random

import attrs

from ._jsonform import JSONForm
from ._public import publish
from ._validators import (
    fraction,
    non_negative_number,
    poll_steps,
    positive_int,
    positive_number,
)

__all__ = ["PollPolicy", "RetryPolicy"]


@attrs.frozen(kw_only=True)
class PollPolicy(JSONForm):
    """When to ask a gateway about a job, as the gateway documents recommend.

    First poll ``first_delay`` after submit; then every ``interval`` for as long
    as elapsed time is below each step's bound; ``jitter`` spreads polls of
    jobs submitted together; ``deadline`` ends the wait.

    Times are finite seconds: ``first_delay`` may be 0, intervals and the
    deadline must be > 0, ``jitter`` is a fraction in ``[0, 1)``. Anything else
    raises :class:`~asyncvideo.errors.ConfigurationError` naming the field.

    Args:
        first_delay: seconds from submit to the first poll.
        steps: ``(until_elapsed, interval)`` pairs with increasing ``until_elapsed``.
        final_interval: the interval once every step has passed.
        jitter: each delay is spread by up to this fraction, up or down.
        deadline: seconds after which ``wait`` gives up (``JobTimeoutError``).
        callback_interval: the safety interval for a job whose create carried the
            client's ``webhook_url``: its callback wakes the poll at once, so it is
            polled only this often in case the callback is lost. 60 s by default:
            a lost callback costs at most a minute of a job that takes minutes,
            and a 600 s deadline at most ten status requests.

    Example:
        >>> policy = PollPolicy()
        >>> [policy.interval_at(t) for t in (0, 29, 30, 119, 120)]
        [5.0, 5.0, 10.0, 10.0, 30.0]
        >>> PollPolicy().scaled(0.01).first_delay
        0.025
    """

    first_delay: float = attrs.field(default=2.5, validator=non_negative_number)
    #: ``(until_elapsed, interval)`` pairs, in order; the last interval holds after them.
    steps: tuple[tuple[float, float], ...] = attrs.field(
        default=((30.0, 5.0), (120.0, 10.0)), validator=poll_steps
    )
    final_interval: float = attrs.field(default=30.0, validator=positive_number)
    jitter: float = attrs.field(default=0.1, validator=fraction)
    deadline: float = attrs.field(default=600.0, validator=positive_number)
    callback_interval: float = attrs.field(default=60.0, validator=positive_number)

    def interval_at(self, elapsed: float) -> float:
        """The un-jittered interval to the next poll, ``elapsed`` seconds after submit."""
        for until, interval in self.steps:
            if elapsed < until:
                return interval
        return self.final_interval

    def next_delay(
        self, elapsed: float, rng: random.Random | None = None, *, callback: bool = False
    ) -> float:
        """Seconds until the next poll: the first delay, or the step interval, jittered.

        With ``callback``, every delay is ``callback_interval`` (the callback
        wakes the poll; this only catches a lost one).
        """
        if callback:
            base = self.callback_interval
        else:
            base = self.first_delay if elapsed <= 0 else self.interval_at(elapsed)
        if self.jitter and rng is not None:
            base *= 1.0 + rng.uniform(-self.jitter, self.jitter)
        return base

    def scaled(self, factor: float) -> PollPolicy:
        """The same schedule with every time multiplied by ``factor`` (for simulators, tests)."""
        return attrs.evolve(
            self,
            first_delay=self.first_delay * factor,
            steps=tuple((until * factor, interval * factor) for until, interval in self.steps),
            final_interval=self.final_interval * factor,
            deadline=self.deadline * factor,
            callback_interval=self.callback_interval * factor,
        )

    def minimum_polls(self, duration: float) -> int:
        """How many polls the un-jittered schedule needs to see a job of ``duration`` finish."""
        elapsed, polls = self.first_delay, 1
        while elapsed < duration and polls < 100_000:
            elapsed += self.interval_at(elapsed)
            polls += 1
        return polls


@attrs.frozen(kw_only=True)
class RetryPolicy(JSONForm):
    """Retries for requests that provably may be repeated.

    Exponential backoff with full jitter (AWS's recommendation): attempt ``n``
    waits a uniform random time in ``[0, min(max_delay, base * 2**n)]``,
    unless the gateway said how long with ``Retry-After``.

    Args:
        max_attempts: tries in all, the first included (a positive ``int``).
        base_delay: the first backoff bound, in seconds.
        max_delay: the largest backoff bound, in seconds.
        max_retry_after: the cap on a gateway's ``Retry-After``.
        not_ready_window: how long a "not ready" content endpoint is retried.
        min_download_rate: bytes per second a download must average over each
            ``download_rate_window``, or the attempt fails (``0`` turns it off).
        download_rate_window: seconds over which the download rate is averaged.

    A download attempt that was cut off after the file advanced (more bytes
    kept for a resume than ever before) does not count against
    ``max_attempts``; one that was too slow or stalled (``Timeouts.read``
    without a byte) always does, so a drip-feeding server cannot hold a
    download slot for ever.

    Times are finite seconds >= 0; anything else (or ``max_attempts`` that is
    not a positive ``int``) raises :class:`~asyncvideo.errors.ConfigurationError`.

    Example:
        >>> RetryPolicy(max_attempts=2).scaled(0.5).base_delay
        0.25
    """

    max_attempts: int = attrs.field(default=4, validator=positive_int)
    base_delay: float = attrs.field(default=0.5, validator=non_negative_number)
    max_delay: float = attrs.field(default=20.0, validator=non_negative_number)
    #: never wait longer than this for a Retry-After (a hostile header must not stall a batch)
    max_retry_after: float = attrs.field(default=120.0, validator=non_negative_number)
    #: how long a content request answered "not ready yet" is retried after the
    #: job succeeded (relays update the content endpoint after the status)
    not_ready_window: float = attrs.field(default=60.0, validator=non_negative_number)
    #: a download slower than this (bytes/s, averaged over ``download_rate_window``) is
    #: cut and retried: a drip-feeding CDN must not hold a download slot for ever
    min_download_rate: float = attrs.field(default=1024.0, validator=non_negative_number)
    download_rate_window: float = attrs.field(default=30.0, validator=positive_number)

    def backoff(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(retry_after, 0.0), self.max_retry_after)
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * (2**attempt)))

    def scaled(self, factor: float) -> RetryPolicy:
        return attrs.evolve(
            self,
            base_delay=self.base_delay * factor,
            max_delay=self.max_delay * factor,
            max_retry_after=self.max_retry_after * factor,
            not_ready_window=self.not_ready_window * factor,
            download_rate_window=self.download_rate_window * factor,
        )


publish(PollPolicy, RetryPolicy)
