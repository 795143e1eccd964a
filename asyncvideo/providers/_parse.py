"""Liberal readers for what gateways send back: task bodies and error bodies.

Gateways exist in many versions, so every reader accepts every documented
shape (and a few undocumented ones) and never raises anything but
``asyncvideo.errors`` types. Unknown fields are kept in ``Job.raw``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote

from .._logtext import printable
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
    "is_not_ready",
    "parse_json_object",
    "parse_progress",
    "parse_retry_after",
    "parse_task",
    "parse_timestamp",
]

logger = logging.getLogger("asyncvideo")

#: Ids that no URL path segment can carry: URL libraries and servers resolve
#: "." and ".." (even percent-encoded, RFC 3986 6.2.2) into another path.
DOT_SEGMENTS = frozenset({".", ".."})


def id_segment(task_id: str) -> str | None:
    """``task_id`` quoted as one URL path segment, or None when no URL can carry it.

    None for a dot segment (see :data:`DOT_SEGMENTS`) and for text with no
    UTF-8 form: a lone surrogate, which a JSON ``"\\ud800"`` escape decodes to.
    """
    if task_id in DOT_SEGMENTS:
        return None
    try:
        return quote(task_id, safe="")
    except UnicodeEncodeError:
        return None


# Keys that carry a finished video's URL, most specific first. ``result_url`` is
# the new-api relay's TaskDto field (older versions put the URL of a succeeded
# task in ``fail_reason``); ``url``/``video_url`` the seeds'.
_URL_KEYS = ("url", "video_url", "result_url", "videoUrl", "download_url", "fail_reason")
# Containers the URL may sit in (a relay's envelope, the upstream body it keeps
# under ``data``, lists of results); searched breadth-first, a few levels deep.
_URL_CONTAINERS = (
    "result",
    "data",
    "metadata",
    "output",
    "task_result",
    "videos",
    "results",
    "creations",
    "content",
)
_URL_SEARCH_DEPTH = 6
_STATUS_KEYS = ("status", "state", "task_status")
# ``task_id`` first: the new-api relay sends its numeric row ``id`` beside the
# string ``task_id`` that its endpoints take.
_ID_KEYS = ("task_id", "id", "video_id")
# The new-api relay's TaskDto says submit_time/finish_time (Unix seconds).
_CREATED_KEYS = ("created_at", "submit_time")
_COMPLETED_KEYS = ("completed_at", "finished_at", "finish_time")
# Flat keys a failed task's reason comes in: the relays' ``fail_reason``, Kling's
# ``task_status_msg``, and Vidu's ``err_code``, which is all Vidu says (it is a code).
_FAILURE_TEXT_KEYS = (
    "fail_reason",
    "failure_reason",
    "error_message",
    "task_status_msg",
    "err_code",
)
# Seconds since 1970 stay below this until the year 5138; larger numbers are milliseconds.
_MS_THRESHOLD = 1e11

# Error codes that mean "no such task", whatever the HTTP status says.
_NOT_FOUND_CODES = frozenset(
    {"task_not_exist", "task_not_found", "not_found", "video_not_found", "resource_not_found"}
)
# A relay behind a relay wraps twice; more is not a task.
_MAX_ENVELOPES = 3
# A relay's message may hold its upstream's error, which may hold its own upstream's.
_MAX_EMBEDDED_ERRORS = 3
_NOT_READY_STATUSES = frozenset({400, 404, 409, 425})
# "Error processing request" is final; "still processing" is not.
_NOT_READY_WORDS = re.compile(
    r"not[\s_]+(yet[\s_]+)?(ready|complete|completed|finished)"
    r"|(still|being|is|currently)[\s_]+(processing|running|generating|pending)"
    r"|in[\s_]+progress",
    re.IGNORECASE,
)

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
                # Python 3.11 reads a "Z" but not the "z" RFC 3339 allows too.
                parsed = datetime.fromisoformat(text.replace("z", "+00:00"))
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


def _http_url(value: object) -> str | None:
    if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
        return value.strip()
    return None


def find_video_url(payload: Mapping[str, object]) -> str | None:
    """The video URL wherever this gateway put it, or None.

    Looks at the body's own URL keys first, then breadth-first into the
    containers gateways nest results in (``result``, a relay's ``data``, lists
    of ``videos``/``creations``…), so the outermost URL wins.
    """
    level: list[object] = [payload]
    for _ in range(_URL_SEARCH_DEPTH):
        deeper: list[object] = []
        for node in level:
            if isinstance(node, list):
                deeper.extend(node[:1])  # a list of results: the first video
                continue
            if not isinstance(node, dict):
                continue
            for key in _URL_KEYS:
                url = _http_url(node.get(key))
                if url:
                    return url
            deeper.extend(node[key] for key in _URL_CONTAINERS if key in node)
        level = deeper
    return None


def _first_timestamp(body: Mapping[str, object], keys: tuple[str, ...]) -> datetime | None:
    for key in keys:
        when = parse_timestamp(body.get(key))
        if when is not None:
            return when
    return None


def _parse_job_error(payload: Mapping[str, object]) -> JobError | None:
    error = payload.get("error")
    if isinstance(error, dict):
        code = as_text(error.get("code")) or as_text(error.get("type"))
        message = as_text(error.get("message")) or as_text(error.get("msg")) or code
        return JobError(code=code, message=message) if message else None
    if isinstance(error, str) and error.strip():
        return JobError(code=None, message=error.strip())
    for key in _FAILURE_TEXT_KEYS:
        text = as_text(payload.get(key))
        if text:
            code = as_text(payload.get("error_code")) or as_text(payload.get("err_code"))
            return JobError(code=code, message=text)
    return None


def _unwrap(payload: Mapping[str, object]) -> Mapping[str, object]:
    """The task inside a relay's envelope: ``{"code": "success", "message": "", "data": {...}}``.

    An envelope names no task id of its own (its ``status`` or ``code``, if any,
    is the envelope's: ``"success"`` while the task is still running); a task
    body that keeps its upstream's answer under ``data`` does name one.
    """
    for _ in range(_MAX_ENVELOPES):
        inner = payload.get("data")
        if any(key in payload for key in _ID_KEYS) or not isinstance(inner, dict):
            break
        nested = isinstance(inner.get("data"), dict)  # an envelope inside an envelope
        if not nested and not any(key in inner for key in (*_STATUS_KEYS, *_ID_KEYS)):
            break
        payload = inner
    return payload


def _body_id(body: Mapping[str, object]) -> str | None:
    """The task id a body names: a JSON string beats a number (a relay's row id)."""
    values = [body.get(key) for key in _ID_KEYS]
    for value in values:
        if isinstance(value, str) and value.strip():
            return value.strip()
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def task_id_in(payload: Mapping[str, object]) -> str | None:
    """The task id an answer names, envelopes unwrapped; ``None`` if it names none."""
    return _body_id(_unwrap(payload))


def _keep_identity(known: str, body_id: str | None, previous: Job | None) -> None:
    # A proxy may re-encode the id in later answers (LiteLLM drops the model
    # from its provider-tagged ids); that id does not work on its endpoints.
    if body_id is None or body_id == known:
        return
    before = _body_id(_unwrap(previous.raw)) if previous is not None else None
    if before != body_id:
        known_text = printable(known)
        logger.debug(
            "task %s is called %s in this answer; keeping %s",
            known_text,
            printable(body_id),
            known_text,
        )


def parse_task(
    payload: object,
    *,
    model: str,
    provider: str,
    task_id: str | None = None,
    previous: Job | None = None,
) -> Job:
    """Read any known task body into a :class:`Job` snapshot.

    The id a job was created or re-attached with (``task_id``, else
    ``previous.id``) is the id it keeps; only a create answer names it.
    ``previous`` keeps the state machine honest: terminal states absorb and
    progress never goes backwards.
    """
    if not isinstance(payload, Mapping):
        raise ProtocolError(f"expected a JSON object for a task, got {type(payload).__name__}")
    body = _unwrap(payload)
    body_id = _body_id(body)
    known = task_id or (previous.id if previous else None)
    if known is not None:
        _keep_identity(known, body_id, previous)
    job_id = known or body_id
    if not job_id:
        raise ProtocolError("the gateway's answer names no task id")
    if id_segment(job_id) is None:
        raise ProtocolError(f"the gateway's answer names task {job_id!r}, which no URL can name")
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
        model=model,
        provider=provider,
        state=state,
        native_status=native,
        progress=progress,
        video_url=video_url or (previous.video_url if previous else None),
        created_at=_first_timestamp(body, _CREATED_KEYS)
        or (previous.created_at if previous else None),
        completed_at=_first_timestamp(body, _COMPLETED_KEYS),
        expires_at=parse_timestamp(body.get("expires_at") or _dig(body, ("result", "expires_at"))),
        error=error,
        raw=payload,
    )


def parse_json_object(body: bytes | str) -> dict[str, object] | None:
    """The body as a JSON object, or None if it is not one (or nests too deep to read)."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    ``llm_provider-retry-after`` (what LiteLLM forwards) counts as ``Retry-After``.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    # The LiteLLM proxy passes its upstream's Retry-After on only under a prefix.
    seconds = lowered.get("retry-after") or lowered.get("llm_provider-retry-after")
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
        reference = now if now is not None else time.time()
        return max(0.0, when.timestamp() - reference)
    return value if math.isfinite(value) and value >= 0 else None


def _error_fields(payload: Mapping[str, object]) -> Mapping[str, object]:
    nested = payload.get("error")
    return nested if isinstance(nested, dict) else payload


def _embedded_error(message: str | None) -> Mapping[str, object] | None:
    """An upstream's error body that a relay put, as JSON text, inside its own message."""
    if not message:
        return None
    # Without a "{" and a later "}" the slice is empty or one character: not JSON either.
    inner = parse_json_object(message[message.find("{") : message.rfind("}") + 1])
    return _error_fields(inner) if inner is not None else None


def _message_of(fields: Mapping[str, object]) -> str | None:
    return as_text(fields.get("message")) or as_text(fields.get("msg"))


def api_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    task_id: str | None = None,
) -> APIError:
    """The typed error for an error answer, from any body shape gateways send.

    Flat: ``{"code", "message", "param", "type"}``; nested: ``{"error": {...}}``;
    a relay's ``{"code", "message", "data"}``; an upstream error embedded as
    JSON text inside ``message`` is unwrapped to its own message and code;
    anything else (an HTML page from a proxy) becomes a short summary. The
    body's ``code`` counts as well as the status: ``task_not_exist`` on a 400
    is a :class:`NotFoundError`.
    """
    payload = parse_json_object(body)
    fields: Mapping[str, object] = _error_fields(payload) if payload is not None else {}
    message = _message_of(fields)
    code, type_, param = as_text(fields.get("code")), as_text(fields.get("type")), None
    param = as_text(fields.get("param"))
    for _ in range(_MAX_EMBEDDED_ERRORS):
        inner = _embedded_error(message)
        if inner is None:
            break
        message = _message_of(inner) or message
        code = as_text(inner.get("code")) or code
        type_ = as_text(inner.get("type")) or type_
        param = as_text(inner.get("param")) or param
    if not message:
        if payload is None and body:
            snippet = body[:200].decode("utf-8", "replace").strip()
            message = f"HTTP {status} with a non-JSON body: {' '.join(snippet.split())[:120]}"
        else:
            message = f"HTTP {status}"
    cls: type[APIError] = _ERROR_BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    # Gateways answer 400, not 404, for a task they never saw, and say so in the code.
    if status == 400 and code is not None and code.lower() in _NOT_FOUND_CODES:
        cls = NotFoundError
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


def is_not_ready(error: APIError) -> bool:
    """Whether a content request was refused only because the video is not ready yet.

    Relays answer like this for a short while after a task reports success
    (new-api: 400 "Task is not completed yet"), so the download is retried.
    """
    if error.status not in _NOT_READY_STATUSES:
        return False
    return any(_NOT_READY_WORDS.search(part) for part in (error.code, error.message) if part)
