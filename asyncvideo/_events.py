"""Progress events of a job (``wait``, ``generate``) or a batch (``generate_many``).

One vocabulary for both, and one place that makes and delivers them:
:func:`change_event` turns what a poll found into an event, and
:func:`emit_event` hands an event to the user's handler. A single job's
events carry ``index=0``; a batch's carry the request's position.

A handler may be a plain function or a coroutine function. It runs on the
task that does the work (the ``wait``/``generate`` call, or the batch's
update task), so events of one job arrive in order: submitted, state
changes and progress (never backwards), then downloaded or failed. A handler
that raises is logged (``asyncvideo`` logger, ERROR, with the traceback)
and the work goes on: a progress bar's bug must not abandon a paid-for job.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
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
    "change_event",
    "emit_event",
    "event_from_dict",
]

logger = logging.getLogger("asyncvideo")


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


def change_event(index: int, job: Job, previous: Job) -> StateChangedEvent | ProgressEvent | None:
    """The event a poll's finding makes: a new state, else higher progress, else none.

    The one place that turns poll updates into events, for single jobs and batches.

    Args:
        index: the request's position (0 for a single job).
        job: the snapshot the poll returned.
        previous: the snapshot before it.
    """
    if job.state is not previous.state:
        return StateChangedEvent(index=index, job=job, previous=previous)
    if job.progress != previous.progress:
        return ProgressEvent(index=index, job=job)
    return None


async def emit_event(handler: EventHandler | None, event: Event | None) -> None:
    """Give ``event`` to ``handler`` (sync or async); if the handler raises, log it and go on."""
    if handler is None or event is None:
        return
    try:
        result = handler(event)
        if inspect.isawaitable(result):
            await result
    except Exception:
        # A progress bar's bug must not abandon paid-for jobs mid-flight.
        logger.exception("on_event handler raised on a %s; the work goes on", type(event).__name__)


def event_from_dict(data: Mapping[str, object]) -> Event:
    """Rebuild any event from its dict form (``event.to_dict()``), chosen by its ``"event"`` key.

    Every event's dict names its kind under ``"event"``: ``"submitted"``,
    ``"state_changed"``, ``"progress"``, ``"downloaded"`` or ``"failed"``, so a
    web app can push events to a browser as JSON and read them back.

    Args:
        data: a mapping as ``event.to_dict()`` (or ``json.loads`` of it) returns it.

    Raises:
        ValidationError: no known ``"event"`` key, or the data does not fit that event.

    Example:
        >>> from asyncvideo import Job, JobState, SubmittedEvent, event_from_dict
        >>> job = Job(id="t1", model="viduq1", provider="vidu", state=JobState.QUEUED)
        >>> event_from_dict(SubmittedEvent(index=0, job=job).to_dict()).job.id
        't1'
    """
    # Imported here: the converter imports this module's classes.
    from ._convert import structure_event

    return structure_event(data)


publish(SubmittedEvent, StateChangedEvent, ProgressEvent, DownloadedEvent, FailedEvent)
