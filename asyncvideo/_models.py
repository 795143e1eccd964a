"""The SDK's data: requests, job snapshots, outcomes and limits."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeAlias, TypedDict

import attrs

from ._jsonform import JSONForm
from ._public import publish
from ._states import JobState
from ._validators import optional, positive_int, positive_number
from .errors import JobFailedError, ValidationError

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "ImageInput",
    "Job",
    "JobError",
    "Limits",
    "Outcome",
    "VideoRequest",
    "VideoRequestFields",
    "is_url",
]

#: An image given as a URL (``http://``, ``https://`` or ``data:``), a path, or raw bytes.
ImageInput: TypeAlias = str | bytes | os.PathLike[str]

#: ``Limits.max_response_bytes`` by default; webhook bodies get the same bound.
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_URL_PREFIXES = ("http://", "https://", "data:")
_SIZE_RE = re.compile(r"^\s*(\d{2,5})\s*[xX*\u00d7]\s*(\d{2,5})\s*$")


def is_url(value: object) -> bool:
    """True when ``value`` is a string naming a URL rather than a local path."""
    return isinstance(value, str) and value.lower().startswith(_URL_PREFIXES)


def parse_size(size: str) -> tuple[int, int] | None:
    """``"1920x1080"`` (or ``1920*1080``) -> ``(1920, 1080)``; None if it is not that shape."""
    match = _SIZE_RE.match(size)
    return (int(match[1]), int(match[2])) if match else None


def _check_prompt(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("prompt must be a non-empty string", field="prompt")


def _check_model(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("model must be a non-empty string", field="model")


def _check_positive(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    # inf would pass ``> 0`` but is no clip length and no JSON number.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValidationError(
            f"{attribute.name} must be a positive number, got {value!r}", field=attribute.name
        )


def _check_size(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or parse_size(value) is None):
        raise ValidationError(f"size must look like '1920x1080', got {value!r}", field="size")


def _check_image(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None or isinstance(value, bytes | os.PathLike):
        return
    if not isinstance(value, str) or not value:
        raise ValidationError(
            f"{attribute.name} must be a URL, a path or bytes, got {type(value).__name__}",
            field=attribute.name,
        )


def _frozen_mapping(value: Mapping[str, object] | None) -> Mapping[str, object]:
    return MappingProxyType(dict(value or {}))


@attrs.frozen(kw_only=True)
class VideoRequest(JSONForm):
    """One clip to generate. Provider adapters map it to each wire format.

    Fields a model cannot take are refused at submit time, before any request.

    Args:
        prompt: what the video shows.
        model: the model name, e.g. ``"sora-2"``, ``"kling-v1"``, ``"wan2.5-t2v-preview"``.
        seconds: clip length.
        size: ``"WIDTHxHEIGHT"`` such as ``"1920x1080"``.
        resolution: a tier such as ``"720P"`` (Wan, Vidu).
        fps: frames per second (generations format).
        seed: random seed.
        negative_prompt: what to avoid (Kling, Wan).
        image: first frame / reference image: URL, path or bytes.
        last_frame: last frame for keyframe models: URL, path or bytes.
        watermark: Wan switch: a watermark on the clip.
        prompt_extend: Wan switch: let the gateway rewrite the prompt.
        audio: Wan switch: generate sound (wan2.5 only).
        callback_url: a webhook the gateway calls when the task ends.
        extra: provider-specific fields, merged into ``metadata`` as given.
        provider: force a provider instead of routing by model name.
        idempotency_key: the key for this logical request; generated when omitted.

    Example:
        >>> VideoRequest(prompt="a red fox in snow", model="kling-v1", seconds=5).seconds
        5
    """

    prompt: str = attrs.field(validator=_check_prompt)
    model: str = attrs.field(default="sora-2", validator=_check_model)
    seconds: float | None = attrs.field(default=None, validator=_check_positive)
    size: str | None = attrs.field(default=None, validator=_check_size)
    resolution: str | None = None
    fps: int | None = attrs.field(default=None, validator=_check_positive)
    seed: int | None = None
    negative_prompt: str | None = None
    image: ImageInput | None = attrs.field(default=None, validator=_check_image)
    last_frame: ImageInput | None = attrs.field(default=None, validator=_check_image)
    watermark: bool | None = None
    prompt_extend: bool | None = None
    audio: bool | None = None
    callback_url: str | None = None
    extra: Mapping[str, object] = attrs.field(factory=dict, converter=_frozen_mapping)
    provider: str | None = None
    idempotency_key: str | None = None

    def __repr__(self) -> str:
        # Raw image bytes would flood logs; show their length instead.
        shown = []
        for field in attrs.fields(VideoRequest):
            value = getattr(self, field.name)
            if value is None or (field.name == "extra" and not value):
                continue
            if isinstance(value, bytes):
                shown.append(f"{field.name}=<{len(value)} bytes>")
            elif isinstance(value, Mapping):
                shown.append(f"{field.name}={dict(value)!r}")
            else:
                shown.append(f"{field.name}={value!r}")
        return f"VideoRequest({', '.join(shown)})"

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> VideoRequest:
        """A request from a mapping (a JSON line, a form); unknown keys are a ValidationError.

        Example:
            >>> VideoRequest.from_fields({"prompt": "a cat", "model": "viduq1"}).model
            'viduq1'
        """
        try:
            return cls(**fields)
        except TypeError as exc:
            raise ValidationError(f"bad VideoRequest field: {exc}") from exc


class VideoRequestFields(TypedDict, total=False):
    """Every :class:`VideoRequest` field as a keyword, for ``submit``, ``generate`` and ``prepare``.

    ``**fields: Unpack[VideoRequestFields]`` lets type checkers and editors see the
    fields: ``promt=`` or ``seconds="5"`` is an error before anything runs. A test
    keeps this in step with :class:`VideoRequest`.

    Example:
        >>> fields: VideoRequestFields = {"prompt": "a cat", "model": "kling-v1", "seconds": 5}
        >>> VideoRequest(**fields).seconds
        5
    """

    prompt: str
    model: str
    seconds: float | None
    size: str | None
    resolution: str | None
    fps: int | None
    seed: int | None
    negative_prompt: str | None
    image: ImageInput | None
    last_frame: ImageInput | None
    watermark: bool | None
    prompt_extend: bool | None
    audio: bool | None
    callback_url: str | None
    extra: Mapping[str, object]
    provider: str | None
    idempotency_key: str | None


@attrs.frozen
class JobError(JSONForm):
    """Why a job failed, as the gateway said it."""

    code: str | None
    message: str


@attrs.frozen(kw_only=True)
class Job(JSONForm):
    """An immutable snapshot of a task on the gateway.

    ``refresh`` and ``wait`` return new snapshots; a ``Job`` never changes.
    """

    id: str
    model: str
    provider: str
    state: JobState
    native_status: str | None = None
    progress: int | None = None
    video_url: str | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    error: JobError | None = None
    raw: Mapping[str, object] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def ref(self) -> str:
        """One opaque, URL-safe string that re-attaches to this task: ``client.get(job.ref)``.

        It carries the provider, model, task id and wire format, so an app stores
        nothing else. It is not a secret: the gateway's key decides who may read the task.
        """
        from ._jobref import make_ref
        from .providers import PROVIDERS

        adapter = PROVIDERS.get(self.provider)
        wire = adapter.wire if adapter is not None else "unknown"
        return make_ref(self.provider, self.model, self.id, wire)

    @property
    def is_terminal(self) -> bool:
        """True once the job has succeeded, failed or been cancelled."""
        return self.state.is_terminal

    @property
    def succeeded(self) -> bool:
        return self.state is JobState.SUCCEEDED

    def raise_for_state(self) -> Job:
        """Raise :class:`~asyncvideo.errors.JobFailedError` if the job failed or was cancelled.

        Returns the job itself otherwise, so it chains:
        ``job = (await client.wait(job)).raise_for_state()``.
        """
        if self.state in (JobState.FAILED, JobState.CANCELLED):
            raise JobFailedError(self)
        return self


@attrs.frozen(kw_only=True)
class Outcome(JSONForm):
    """What became of one request of a ``generate_many`` batch.

    Attributes:
        index: the request's position in the input.
        request: the request itself.
        job: the last job snapshot (None if the create never succeeded).
        path: the downloaded file (None unless it succeeded and was saved).
        error: the error that ended it (None on success).
    """

    index: int
    request: VideoRequest
    job: Job | None = None
    path: Path | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.path is not None


@attrs.frozen(kw_only=True)
class Limits(JSONForm):
    """Concurrency and size bounds for one client. Every field is optional.

    Args:
        max_active_jobs: submitted-but-unfinished jobs in one batch.
        max_creates: create requests in flight.
        max_polls: status requests in flight.
        max_downloads: downloads in flight.
        requests_per_second: a client-wide request rate cap (None: only the
            adaptive limit that 429s set).
        max_connections: size of the shared aiohttp connection pool.
        max_response_bytes: the largest status, create or error answer read
            (4 MiB; decompressed size). A bigger one is never read whole: it
            is a :class:`~asyncvideo.errors.ProtocolError` (for a create,
            :class:`~asyncvideo.errors.CreateOutcomeUnknown` with the key).
            Videos are streamed to disk and not bound by it.

    Other bounds on what a gateway controls, for reference: JSON nested too
    deep to parse is a ``ProtocolError``; ``Retry-After`` is capped by
    :attr:`RetryPolicy.max_retry_after`; a wait's deadline
    (:attr:`PollPolicy.deadline` or ``timeout=``) ends its retries and cuts a
    poll in flight; ``Timeouts`` bound each request; at most 256 unknown status
    words (64 characters each) are remembered for logging.

    Counts are positive ``int`` values; the rate is a finite number > 0. Anything
    else (``None``, ``2.5``, ``True``, ``0``, NaN) raises
    :class:`~asyncvideo.errors.ConfigurationError` naming the field.

    Example:
        >>> Limits(max_active_jobs=50).max_creates
        16
    """

    max_active_jobs: int = attrs.field(default=200, validator=positive_int)
    max_creates: int = attrs.field(default=16, validator=positive_int)
    max_polls: int = attrs.field(default=64, validator=positive_int)
    max_downloads: int = attrs.field(default=8, validator=positive_int)
    requests_per_second: float | None = attrs.field(
        default=None, validator=optional(positive_number)
    )
    max_connections: int = attrs.field(default=100, validator=positive_int)
    max_response_bytes: int = attrs.field(
        default=DEFAULT_MAX_RESPONSE_BYTES, validator=positive_int
    )


publish(VideoRequest, VideoRequestFields, JobError, Job, Outcome, Limits)
