"""Liberal readers for what gateways send back: task bodies and error bodies.

Gateways exist in many versions, so every reader accepts every documented
shape (and a few undocumented ones) and never raises anything but
``asyncvideo.errors`` types. Unknown fields are kept in ``Job.raw``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime

from .._models import Job, JobError
from .._states import JobState, advance_state, parse_state
from ..errors import (
    APIError,
    AuthenticationError,
    ContentPolicyError,
    InsufficientQuotaError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    ServerError,
)

__all__ = [
    "api_error",
    "as_text",
    "find_video_url",
    "parse_json_object",
    "parse_progress",
    "parse_retry_after",
    "parse_task",
    "parse_timestamp",
]

# Where gateways put the finished video's URL, most specific first.
_URL_PATHS: tuple[tuple[str, ...], ...] = (
    ("url",),
    ("video_url",),
    ("result", "url"),
    ("result", "video_url"),
    ("metadata", "url"),
    ("metadata", "video_url"),
    ("output", "video_url"),
    ("data", "url"),
)
_STATUS_KEYS = ("status", "state", "task_status")
_ID_KEYS = ("id", "task_id", "video_id")
# Seconds since 1970 stay below this until the year 5138; larger numbers are milliseconds.
_MS_THRESHOLD = 1e11

_ERROR_BY_STATUS: Mapping[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: InsufficientQuotaError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: ContentPolicyError,
    429: RateLimitError,
}


def as_text(value: object) -> str | None:
    """A wire scalar as a string (codes come as strings, ints or null)."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _dig(payload: Mapping[str, object], path: tuple[str, ...]) -> object:
    node: object = payload
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def parse_progress(value: object) -> int | None:
    """``30``, ``30.5``, ``"30"`` or ``"30%"`` -> 30, clamped to 0..100; None if unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    number: float
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().rstrip("%").strip())
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(number):
        return None
    return int(min(100.0, max(0.0, number)))


def parse_timestamp(value: object) -> datetime | None:
    """Unix seconds or milliseconds (number or digits), or ISO 8601 -> aware UTC datetime."""
    if isinstance(value, bool) or value is None:
        return None
    number: float | None = None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if number is None or not math.isfinite(number) or number <= 0:
        return None
    if number > _MS_THRESHOLD:
        number /= 1000.0
    try:
        return datetime.fromtimestamp(number, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def find_video_url(payload: Mapping[str, object]) -> str | None:
    """The video URL wherever this gateway put it, or None."""
    for path in _URL_PATHS:
        value = _dig(payload, path)
        if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
            return value.strip()
    for key in ("videos", "results"):  # lists of results: take the first video
        items = _dig(payload, (key,)) or _dig(payload, ("result", key))
        if isinstance(items, list) and items and isinstance(items[0], dict):
            url = find_video_url(items[0])
            if url:
                return url
    return None


def _parse_job_error(payload: Mapping[str, object]) -> JobError | None:
    error = payload.get("error")
    if isinstance(error, dict):
        message = as_text(error.get("message")) or as_text(error.get("msg")) or ""
        code = as_text(error.get("code")) or as_text(error.get("type"))
        if message or code:
            return JobError(code=code, message=message or code or "")
        return None
    if isinstance(error, str) and error.strip():
        return JobError(code=None, message=error.strip())
    for key in ("fail_reason", "failure_reason", "error_message"):
        text = as_text(payload.get(key))
        if text:
            return JobError(code=as_text(payload.get("error_code")), message=text)
    return None


def _unwrap(payload: Mapping[str, object]) -> Mapping[str, object]:
    # Some gateways wrap the task: {"code": 0, "data": {...}}.
    if not any(key in payload for key in _STATUS_KEYS):
        inner = payload.get("data")
        if isinstance(inner, dict) and any(key in inner for key in _STATUS_KEYS):
            return inner
    return payload


def parse_task(
    payload: object,
    *,
    model: str,
    provider: str,
    task_id: str | None = None,
    previous: Job | None = None,
) -> Job:
    """Read any known task body into a :class:`Job` snapshot.

    ``previous`` keeps the state machine honest: terminal states absorb and
    progress never goes backwards.
    """
    if not isinstance(payload, Mapping):
        raise ProtocolError(f"expected a JSON object for a task, got {type(payload).__name__}")
    body = _unwrap(payload)
    found_id = next((as_text(body.get(key)) for key in _ID_KEYS if as_text(body.get(key))), None)
    job_id = found_id or task_id or (previous.id if previous else None)
    if not job_id:
        raise ProtocolError("the gateway's answer names no task id")
    native = next((as_text(body.get(key)) for key in _STATUS_KEYS if as_text(body.get(key))), None)
    state = advance_state(previous.state if previous else None, parse_state(native))
    progress = parse_progress(body.get("progress"))
    if previous is not None and previous.progress is not None:
        progress = previous.progress if progress is None else max(progress, previous.progress)
    if state is JobState.SUCCEEDED:
        progress = 100
    failed = state in (JobState.FAILED, JobState.CANCELLED)
    error = _parse_job_error(body) if failed else None
    if failed and error is None:
        error = JobError(code=None, message=f"the gateway reported {native or state.value}")
    # Gateways attach the URL only on success; skip the search on the many polls before.
    video_url = find_video_url(body) if state is JobState.SUCCEEDED else None
    return Job(
        id=job_id,
        model=as_text(body.get("model")) or model,
        provider=provider,
        state=state,
        native_status=native,
        progress=progress,
        video_url=video_url or (previous.video_url if previous else None),
        created_at=parse_timestamp(body.get("created_at"))
        or (previous.created_at if previous else None),
        completed_at=parse_timestamp(body.get("completed_at") or body.get("finished_at")),
        expires_at=parse_timestamp(body.get("expires_at") or _dig(body, ("result", "expires_at"))),
        error=error,
        raw=payload,
    )


def parse_json_object(body: bytes) -> dict[str, object] | None:
    """The body as a JSON object, or None if it is not one."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    seconds = lowered.get("retry-after")
    if seconds is None:
        return None
    try:
        value = float(seconds)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(seconds)
        except (TypeError, ValueError, IndexError):
            return None
        reference = now if now is not None else datetime.now(UTC).timestamp()
        return max(0.0, when.timestamp() - reference)
    return value if math.isfinite(value) and value >= 0 else None


def api_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    task_id: str | None = None,
) -> APIError:
    """The typed error for an error answer, from either documented body shape or none.

    Flat: ``{"code", "message", "param", "type"}``; nested: ``{"error": {...}}``;
    anything else (an HTML page from a proxy) becomes a short summary.
    """
    payload = parse_json_object(body)
    fields: Mapping[str, object] = {}
    if payload is not None:
        nested = payload.get("error")
        fields = nested if isinstance(nested, dict) else payload
    message = as_text(fields.get("message")) or as_text(fields.get("msg"))
    if not message:
        if payload is None and body:
            snippet = body[:200].decode("utf-8", "replace").strip()
            message = f"HTTP {status} with a non-JSON body: {' '.join(snippet.split())[:120]}"
        else:
            message = f"HTTP {status}"
    code, type_, param = as_text(fields.get("code")), as_text(fields.get("type")), None
    param = as_text(fields.get("param"))
    cls: type[APIError] = _ERROR_BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    # Gateways answer 400, not 404, for a task they never saw.
    if status == 400 and task_id and param in ("task_id", "video_id", "id"):
        cls = NotFoundError
    if cls is RateLimitError:
        return RateLimitError(
            message,
            retry_after=parse_retry_after(headers),
            code=code,
            type=type_,
            param=param,
            task_id=task_id,
        )
    return cls(message, status=status, code=code, type=type_, param=param, task_id=task_id)
