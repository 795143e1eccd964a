"""asyncvideo: an asyncio-native SDK for AI video-generation gateways.

One clip is one ``await``; hundreds of clips at once are safe, fast and cheap::

    from asyncvideo import Client, VideoRequest

    async with Client(api_key="sk-...", base_url="https://gateway.example") as client:
        path = await client.generate(prompt="a cat", model="sora-2", output="cat.mp4")
"""

from __future__ import annotations

from . import errors as errors
from . import webhooks as webhooks
from ._batch import Batch as Batch
from ._client import Client as Client
from ._clock import Clock as Clock
from ._clock import ManualClock as ManualClock
from ._clock import SystemClock as SystemClock
from ._destination import check_output as check_output
from ._download import VideoStream as VideoStream
from ._events import DownloadedEvent as DownloadedEvent
from ._events import Event as Event
from ._events import EventHandler as EventHandler
from ._events import FailedEvent as FailedEvent
from ._events import ProgressEvent as ProgressEvent
from ._events import StateChangedEvent as StateChangedEvent
from ._events import SubmittedEvent as SubmittedEvent
from ._events import event_from_dict as event_from_dict
from ._models import ImageInput as ImageInput
from ._models import Job as Job
from ._models import JobError as JobError
from ._models import Limits as Limits
from ._models import Outcome as Outcome
from ._models import VideoRequest as VideoRequest
from ._models import VideoRequestFields as VideoRequestFields
from ._polling import PollPolicy as PollPolicy
from ._polling import RetryPolicy as RetryPolicy
from ._profiles import GATEWAYS as GATEWAYS
from ._profiles import Endpoints as Endpoints
from ._profiles import GatewayProfile as GatewayProfile
from ._request_files import read_requests as read_requests
from ._states import JobState as JobState
from ._store import JobStore as JobStore
from ._store import JournalEntry as JournalEntry
from ._store import SQLiteJournal as SQLiteJournal
from ._transport import AiohttpTransport as AiohttpTransport
from ._transport import AsyncTransport as AsyncTransport
from ._transport import FilePart as FilePart
from ._transport import HTTPRequest as HTTPRequest
from ._transport import HTTPResponse as HTTPResponse
from ._transport import Timeouts as Timeouts
from ._version import __version__ as __version__
from .providers import KNOWN_MODELS as KNOWN_MODELS

__all__ = [
    "GATEWAYS",
    "KNOWN_MODELS",
    "AiohttpTransport",
    "AsyncTransport",
    "Batch",
    "Client",
    "Clock",
    "DownloadedEvent",
    "Endpoints",
    "Event",
    "EventHandler",
    "FailedEvent",
    "FilePart",
    "GatewayProfile",
    "HTTPRequest",
    "HTTPResponse",
    "ImageInput",
    "Job",
    "JobError",
    "JobState",
    "JobStore",
    "JournalEntry",
    "Limits",
    "ManualClock",
    "Outcome",
    "PollPolicy",
    "ProgressEvent",
    "RetryPolicy",
    "SQLiteJournal",
    "StateChangedEvent",
    "SubmittedEvent",
    "SystemClock",
    "Timeouts",
    "VideoRequest",
    "VideoRequestFields",
    "VideoStream",
    "__version__",
    "check_output",
    "errors",
    "event_from_dict",
    "read_requests",
    "webhooks",
]
