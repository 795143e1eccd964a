"""Progress events of a ``generate_many`` batch, for progress bars and logs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeAlias

import attrs

from ._jsonform import JSONForm
from ._models import Job, VideoRequest
from ._public import publish

__all__ = [
    "DownloadedEvent",
    "Event",
    "EventHandler",
    "FailedEvent",
    "ProgressEvent",
    "StateChangedEvent",
    "SubmittedEvent",
]


@attrs.frozen(kw_only=True)
class SubmittedEvent(JSONForm):
    """The gateway accepted request ``index`` and gave it a task id."""

    index: int
    job: Job


@attrs.frozen(kw_only=True)
class StateChangedEvent(JSONForm):
    """The job moved to a new state (queued -> running -> terminal)."""

    index: int
    job: Job
    previous: Job


@attrs.frozen(kw_only=True)
class ProgressEvent(JSONForm):
    """The gateway reported higher progress (0-100) without a state change."""

    index: int
    job: Job


@attrs.frozen(kw_only=True)
class DownloadedEvent(JSONForm):
    """The video is verified and in place at ``path``."""

    index: int
    job: Job
    path: Path
    size: int


@attrs.frozen(kw_only=True)
class FailedEvent(JSONForm):
    """Request ``index`` ended without a video: ``error`` says why."""

    index: int
    request: VideoRequest
    job: Job | None
    error: BaseException


Event: TypeAlias = (
    SubmittedEvent | StateChangedEvent | ProgressEvent | DownloadedEvent | FailedEvent
)

#: ``on_event`` may be a plain function or a coroutine function.
EventHandler: TypeAlias = Callable[[Event], Awaitable[None] | None]

publish(SubmittedEvent, StateChangedEvent, ProgressEvent, DownloadedEvent, FailedEvent)
