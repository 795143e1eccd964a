"""The one retry decision: what was asked, what happened -> wait and try again, or give up.

Every request the SDK sends comes through here: status queries, creates and
downloads. What may be repeated differs by kind (a create that may have made
a task must not be sent twice unless the gateway deduplicates by key), so the
kind is part of the question; the answer is a :class:`Retry` or an exception.
"""

from __future__ import annotations

import random
from typing import Literal

import attrs

from ._clock import Clock
from ._polling import RetryPolicy
from .errors import (
    APIError,
    AsyncVideoError,
    ConnectError,
    CreateOutcomeUnknown,
    DownloadError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TransportError,
)
from .providers._parse import is_not_ready

__all__ = ["RETRYABLE_STATUSES", "TRANSIENT_ERRORS", "RequestKind", "Retry", "RetryDecision"]

#: ``"status"``: a status query; ``"create"``: a create (may cost money);
#: ``"download"``: a video body.
RequestKind = Literal["status", "create", "download"]

#: Answers after which the same request may succeed.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

#: Errors after which a job is simply polled again at its next scheduled time.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    TransportError,
    ServerError,
    RateLimitError,
    ProtocolError,
)


@attrs.frozen
class Retry:
    """Try again after ``delay`` seconds.

    ``counted`` is False for a wait that is not a failed attempt (a content
    endpoint that has not caught up with the status yet, or a download cut off
    after the file advanced).
    """

    delay: float
    counted: bool = True


class RetryDecision:
    """Decides, for one client, whether a failed request is tried again.

    Args:
        policy: attempts, backoff, the ``Retry-After`` cap and the not-ready window.
        rng: jitter source (seeded in tests).
        clock: for the not-ready window.
        honours_idempotency_keys: the gateway deduplicates creates by
            ``Idempotency-Key``, so an ambiguous create may be sent again.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        rng: random.Random,
        clock: Clock,
        *,
        honours_idempotency_keys: bool,
    ) -> None:
        self.policy = policy
        self._rng = rng
        self._clock = clock
        self._honours_keys = honours_idempotency_keys

    def after(
        self,
        kind: RequestKind,
        attempt: int,
        error: AsyncVideoError,
        *,
        idempotency_key: str | None = None,
        not_ready_waits: int = 0,
        not_ready_until: float | None = None,
        deadline: float | None = None,
        progressed: bool = False,
    ) -> Retry:
        """When to try ``kind`` again after ``error`` on ``attempt`` (0-based); or raise.

        Args:
            kind: what was asked.
            attempt: failed attempts before this one.
            error: what happened.
            idempotency_key: a create's key, for :class:`CreateOutcomeUnknown`.
            not_ready_waits: not-ready waits so far (their backoff grows apart).
            not_ready_until: for a download from the gateway's own content
                endpoint, the clock time until which "not ready yet" is waited out.
            deadline: the clock time by which the caller's work must be over (a
                wait's deadline): a retry that would sleep or start past it is
                not made, and the error is final as on the last attempt.
            progressed: a download cut off after it kept more of the file than
                ever before; such an attempt does not count against
                ``max_attempts`` (the caller leaves slow or stalled ones out).

        Raises:
            CreateOutcomeUnknown: a create that may have made a task, not to be
                sent again.
            DownloadError: a download that kept failing in transport.
            AsyncVideoError: ``error`` itself, when it is final.
        """
        policy = self.policy
        if (
            isinstance(error, APIError)
            and not_ready_until is not None
            and is_not_ready(error)
            and self._clock.monotonic() < not_ready_until
        ):
            delay = policy.backoff(not_ready_waits, self._rng)
            return Retry(min(delay, not_ready_until - self._clock.monotonic()), counted=False)
        retryable, ambiguous = self._classify(kind, error)
        last = attempt + 1 >= policy.max_attempts and not progressed
        delay = 0.0
        if retryable and not last:
            retry_after = error.retry_after if isinstance(error, RateLimitError) else None
            delay = policy.backoff(attempt, self._rng, retry_after)
            # A retry that could only start after the deadline is one nobody waits for.
            last = deadline is not None and self._clock.monotonic() + delay >= deadline
        if ambiguous and (last or not retryable or not self._honours_keys):
            raise CreateOutcomeUnknown.after(error, idempotency_key=idempotency_key) from error
        if not retryable or last:
            if kind == "download" and isinstance(error, TransportError):
                raise DownloadError(
                    f"download failed after {attempt + 1} attempts: {error}", task_id=error.task_id
                ) from error
            raise error
        return Retry(delay, counted=not progressed)

    @staticmethod
    def _classify(kind: RequestKind, error: AsyncVideoError) -> tuple[bool, bool]:
        """``(may be repeated, is a create that may have made a task)``."""
        if isinstance(error, ConnectError):
            return True, False  # it never reached the gateway
        if isinstance(error, TransportError):
            return True, kind == "create"
        if isinstance(error, APIError) and error.status in RETRYABLE_STATUSES:
            # A 429 was refused before any work; a 5xx or 408 may not have been.
            return True, kind == "create" and error.status != 429
        if isinstance(error, ProtocolError):
            # An answer we cannot read: the same request would get it again; a
            # create it answered may well have made its task.
            return False, kind == "create"
        return False, False
