"""Limits and injected faults: rate buckets, active-task bounds, scripted failures.

All of it is O(1) or O(log n) per request and reads time only from the values
passed in, so the gateway's clock (possibly a ManualClock) drives everything.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Literal

import attrs

__all__ = [
    "ActiveTasks",
    "DropBudget",
    "RequestKind",
    "ScriptedFailure",
    "ScriptedFailures",
    "TokenBuckets",
]

# Endpoint kinds, for counters and scripted failures.
RequestKind = Literal["create", "status", "content", "cdn", "other"]
SCRIPTABLE_KINDS: tuple[RequestKind, ...] = ("create", "status", "content", "cdn")


@attrs.define
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One token bucket per API key: ``rate`` tokens per second, burst ``max(1, rate)``."""

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, rate: float, now: float) -> float:
        """Spend a token; 0.0 if allowed, else seconds until one is available."""
        capacity = max(1.0, rate)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(capacity, now)
        else:
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    def clear(self) -> None:
        self._buckets.clear()


class ActiveTasks:
    """Unfinished tasks per key, as a heap of end times (tasks end lazily)."""

    __slots__ = ("_ends",)

    def __init__(self) -> None:
        self._ends: dict[str, list[float]] = {}

    def count(self, key: str, now: float) -> int:
        ends = self._ends.get(key)
        if not ends:
            return 0
        while ends and ends[0] <= now:
            heapq.heappop(ends)
        return len(ends)

    def add(self, key: str, ends_at: float) -> None:
        heapq.heappush(self._ends.setdefault(key, []), ends_at)

    def next_end(self, key: str) -> float | None:
        ends = self._ends.get(key)
        return ends[0] if ends else None


@attrs.frozen
class ScriptedFailure:
    """One scripted answer: an HTTP status, or 0 to drop the connection unanswered.

    ``after_processing`` (creates only) makes the gateway create the task
    first, so the client sees a failure for a request that did take effect.
    """

    status: int
    after_processing: bool = False


class ScriptedFailures:
    """Queues of scripted answers per request kind, consumed in order."""

    __slots__ = ("_queues",)

    def __init__(self) -> None:
        self._queues: dict[RequestKind, deque[ScriptedFailure]] = {
            kind: deque() for kind in SCRIPTABLE_KINDS
        }

    def add(self, kind: RequestKind, statuses: list[int], *, after_processing: bool) -> None:
        if kind not in self._queues:
            raise ValueError(f"kind must be one of {SCRIPTABLE_KINDS}, got {kind!r}")
        if after_processing and kind != "create":
            raise ValueError("after_processing only makes sense for creates")
        for status in statuses:
            if status != 0 and not 100 <= status <= 599:
                raise ValueError(f"not an HTTP status (or 0 = drop): {status}")
        self._queues[kind].extend(ScriptedFailure(s, after_processing) for s in statuses)

    def pop(self, kind: RequestKind, *, after_processing: bool = False) -> ScriptedFailure | None:
        """The next scripted answer for this stage of a request, if one is due."""
        queue = self._queues.get(kind)
        if queue and queue[0].after_processing == after_processing:
            return queue.popleft()
        return None

    def pending(self, kind: RequestKind) -> int:
        return len(self._queues.get(kind, ()))

    def clear(self) -> None:
        for queue in self._queues.values():
            queue.clear()


class DropBudget:
    """How many more downloads to cut short (``None`` = every one)."""

    __slots__ = ("remaining",)

    def __init__(self, remaining: int | None) -> None:
        self.remaining = remaining

    def consume(self) -> bool:
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True
