"""Request pacing: a fixed cap and an adaptive (AIMD) rate that 429s shrink."""

from __future__ import annotations

import math
from collections import deque

from ._clock import Clock
from .errors import TimeoutError

__all__ = ["AdaptiveRateLimiter"]

# How far back sends are counted to estimate the current rate when no rate is set yet:
# one second, so the count of sends in it is the rate per second.
_ESTIMATE_WINDOW = 1.0


class AdaptiveRateLimiter:
    """Spaces requests out to a rate that 429s cut and successes restore.

    Multiplicative decrease, gradual increase (the TCP recipe): a 429 halves
    the rate; successes raise it by about ``growth`` (5%) plus one request per
    second, per second of successes, up to the ``ceiling`` (or, with no
    ceiling, until pacing is switched off again).
    A 429 for a request sent before the last cut is ignored, so one burst of
    rejections in flight cuts the rate once, not fifty times. ``Retry-After``
    holds every request back until it has passed.

    Args:
        clock: where time comes from.
        ceiling: the most requests per second ever sent; None for no cap.
        floor: the least the rate is ever cut to.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        ceiling: float | None = None,
        floor: float = 0.2,
        decrease: float = 0.5,
        growth: float = 0.05,
    ) -> None:
        self._clock = clock
        self._ceiling = ceiling
        self._floor = floor
        self._decrease = decrease
        self._growth = growth
        self._rate: float | None = ceiling
        self._next_slot = 0.0
        self._blocked_until = 0.0
        self._last_cut = -math.inf  # no cut yet
        self._recent: deque[float] = deque()
        self.throttle_count = 0

    @property
    def rate(self) -> float | None:
        """Requests per second now allowed (None: not paced)."""
        return self._rate

    async def acquire(self, deadline: float | None = None) -> float:
        """Wait for this request's turn; returns the clock time it was let through.

        Raises:
            TimeoutError: the turn comes only after ``deadline`` (a wait's, on
                the clock); nothing is reserved and nothing is waited for.
        """
        now = self._clock.monotonic()
        start = max(now, self._blocked_until)
        if self._rate is not None:
            start = max(start, self._next_slot)
        if deadline is not None and start > deadline:
            raise TimeoutError(
                f"no turn under the rate limit for {start - now:.1f}s, past the deadline"
            )
        if self._rate is not None:
            self._next_slot = start + 1.0 / self._rate
        if start > now:
            await self._clock.sleep(start - now)
        if self._rate is None:
            self._remember(start)
        return start

    def _remember(self, sent_at: float) -> None:
        recent = self._recent
        recent.append(sent_at)
        while recent and recent[0] < sent_at - _ESTIMATE_WINDOW:
            recent.popleft()

    def on_throttled(self, sent_at: float, retry_after: float | None = None) -> None:
        """A request let through at ``sent_at`` was answered 429."""
        now = self._clock.monotonic()
        self.throttle_count += 1
        if retry_after is not None:  # one of 0 or less holds nothing: a turn is never before now
            self._blocked_until = max(self._blocked_until, now + retry_after)
        # Sent at or before the last cut: it went out under the old rate, already halved.
        if sent_at <= self._last_cut:
            return
        self._last_cut = now
        if self._rate is None:
            self._rate = max(self._floor, len(self._recent) * self._decrease)
            self._recent.clear()
        else:
            self._rate = max(self._floor, self._rate * self._decrease)
        self._next_slot = max(self._next_slot, now + 1.0 / self._rate)

    def on_success(self) -> None:
        """A request was answered without throttling."""
        if self._rate is None:
            return
        # Successes arrive ``rate`` times a second, so this adds growth*rate + 1 per second.
        self._rate += self._growth + 1.0 / self._rate
        if self._ceiling is not None:
            self._rate = min(self._ceiling, self._rate)
            return
        # Recovered well past where the gateway pushed back: stop pacing.
        if self._rate > 1000.0:
            self._rate = None
