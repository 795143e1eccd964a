"""JSON bodies the gateway sends: task objects per endpoint family, and errors.

Each family renders the same :class:`Task` its own way; the config decides
the quirks (status case, progress style, where the URL goes, timestamp unit).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Literal

import attrs

from ._config import GatewayConfig
from ._tasks import (
    GENERATION_TASK_WORDS,
    NATIVE_WORDS,
    OPENAI_WORDS,
    Family,
    Phase,
    Provider,
    Snapshot,
    Task,
    Words,
)

__all__ = [
    "CALLBACK_BODIES",
    "ErrorKind",
    "View",
    "case_word",
    "create_body",
    "error_body",
    "generation_body",
    "html_error",
    "native_video_body",
    "render_progress",
    "render_timestamp",
    "status_body",
]

Json = dict[str, object]


@attrs.frozen
class View:
    """A task at one instant plus what the gateway derived for it."""

    snapshot: Snapshot
    url: str | None
    expires_at: float | None
    config: GatewayConfig


def case_word(word: str, config: GatewayConfig) -> str:
    if config.status_case == "upper":
        return word.upper()
    if config.status_case == "mixed":
        return word.title()
    return word


def _status(words: Words, view: View) -> str:
    return case_word(words.word(view.snapshot), view.config)


def render_progress(value: int, config: GatewayConfig) -> int | str:
    return f"{value}%" if config.progress_style == "percent_string" else value


def render_timestamp(value: float, config: GatewayConfig) -> int:
    return int(value * 1000) if config.timestamps_ms else int(value)


def _place_url(body: Json, url: str, field: str) -> None:
    if field == "none":
        return
    if "." not in field:
        body[field] = url
        return
    outer, inner = field.split(".", 1)
    nested = body.get(outer)
    if not isinstance(nested, dict):
        nested = body[outer] = {}
    nested[inner] = url


def _url_field(view: View, auto: str) -> str:
    field = view.config.url_field
    return auto if field == "auto" else field


def _error_or_none(task: Task, view: View) -> Json | None:
    if view.snapshot.phase is Phase.FAILED and task.error is not None:
        return dict(task.error.to_dict())
    return None


def _openai_video(task: Task, view: View) -> Json:
    # Exactly the fields of openai.types.Video; the OpenAI API has no URL field.
    config = view.config
    terminal = view.snapshot.phase.is_terminal
    return {
        "id": task.id,
        "object": "video",
        "model": task.model,
        "status": _status(OPENAI_WORDS, view),
        "progress": render_progress(view.snapshot.progress, config),
        "created_at": render_timestamp(task.created_at, config),
        "completed_at": render_timestamp(task.completed_at, config) if terminal else None,
        "expires_at": render_timestamp(view.expires_at, config)
        if view.expires_at is not None
        else None,
        "error": _error_or_none(task, view),
        "prompt": task.prompt,
        "remixed_from_video_id": None,
        "seconds": task.seconds,
        "size": task.size,
    }


def native_video_body(task: Task, view: View) -> Json:
    # Seeds 000/001: the provider's own status word passed through.
    config = view.config
    body: Json = {
        "id": task.id,
        "object": "video",
        "model": task.model,
        "created_at": render_timestamp(task.created_at, config),
        "status": _status(NATIVE_WORDS[task.provider], view),
        "progress": render_progress(view.snapshot.progress, config),
        "size": task.size,
        "seconds": task.seconds,
        "quality": "standard",
        "remixed_from_video_id": None,
        "error": _error_or_none(task, view),
    }
    if view.snapshot.phase.is_terminal:
        body["completed_at"] = render_timestamp(task.completed_at, config)
    if view.expires_at is not None:
        body["expires_at"] = render_timestamp(view.expires_at, config)
    if view.url is not None:
        _place_url(body, view.url, _url_field(view, "url"))
    return body


def _video(task: Task, view: View) -> Json:
    if view.config.vocabulary == "openai":
        return _openai_video(task, view)
    return native_video_body(task, view)


# The flat keys each provider adds on failure, next to the generic error object.
_FAILURE_KEYS: Mapping[Provider, tuple[str, Literal["code", "message"]]] = MappingProxyType(
    {
        Provider.SORA: ("fail_reason", "message"),
        Provider.WAN: ("fail_reason", "message"),
        Provider.KLING: ("task_status_msg", "message"),
        Provider.JIMENG: ("fail_reason", "message"),
        Provider.VIDU: ("err_code", "code"),
    }
)


def generation_body(task: Task, view: View) -> Json:
    # Seed 002: a flat body with result metadata.
    config = view.config
    body: Json = {
        "task_id": task.id,
        "status": _status(NATIVE_WORDS[task.provider], view),
        "progress": render_progress(view.snapshot.progress, config),
        "format": "mp4",
        "created_at": render_timestamp(task.created_at, config),
        "metadata": {
            "duration": task.params.get("duration"),
            "fps": task.params.get("fps"),
            "height": task.params.get("height"),
            "width": task.params.get("width"),
            "seed": task.params.get("seed"),
        },
        "error": _error_or_none(task, view),
    }
    if view.snapshot.phase is Phase.FAILED and task.error is not None:
        key, attribute = _FAILURE_KEYS[task.provider]
        body[key] = getattr(task.error, attribute)
    if view.url is not None:
        _place_url(body, view.url, _url_field(view, "url"))
    return body


def _generation_task(task: Task, view: View) -> Json:
    # Seed 003: completed_at/expires_at/result only once there is something to say.
    config = view.config
    body: Json = {
        "id": task.id,
        "object": "generation.task",
        "model": task.model,
        "status": _status(GENERATION_TASK_WORDS, view),
        "progress": render_progress(view.snapshot.progress, config),
        "created_at": render_timestamp(task.created_at, config),
    }
    if view.snapshot.phase.is_terminal:
        body["completed_at"] = render_timestamp(task.completed_at, config)
    if view.expires_at is not None:
        body["expires_at"] = render_timestamp(view.expires_at, config)
    if view.url is not None:
        _place_url(body, view.url, _url_field(view, "result.url"))
    error = _error_or_none(task, view)
    if error is not None:
        body["error"] = error
    return body


def _vidu_callback_body(task: Task, view: View) -> Json:
    """What Vidu POSTs to ``callback_url``: its own task body, whoever relayed the create.

    A relay passes ``callback_url`` and ``payload`` (from ``metadata``) through
    to Vidu, so the body names Vidu's task id, not the relay's, and echoes
    ``payload`` (new-api ``relay/channel/task/vidu``; Vidu's task query shape).
    """
    failed = view.snapshot.phase is Phase.FAILED
    metadata = task.params.get("metadata")
    payload = metadata.get("payload") if isinstance(metadata, dict) else None
    creations: list[Json] = []
    if view.url is not None:
        creations.append(
            {
                "id": f"{task.upstream_id or task.id}-0",
                "url": view.url,
                "cover_url": f"{view.url}.jpg",
                "watermarked_url": view.url,
            }
        )
    return {
        "id": task.upstream_id or task.id,
        "state": _status(NATIVE_WORDS[Provider.VIDU], view),
        "err_code": task.error.code if failed and task.error is not None else "",
        "credits": 4 if not failed else 0,
        "payload": payload if isinstance(payload, str) else "",
        "bgm": False,
        "off_peak": False,
        "creations": creations,
    }


def _kling_callback_body(task: Task, view: View) -> Json:
    """What Kling POSTs to ``callback_url`` (its callback protocol): its own task, with
    ``task_info.external_task_id`` echoing the create's; a relay passes both through."""
    failed = view.snapshot.phase is Phase.FAILED
    metadata = task.params.get("metadata")
    external = metadata.get("external_task_id") if isinstance(metadata, dict) else None
    videos: list[Json] = []
    if view.url is not None:
        videos.append(
            {"id": f"{task.upstream_id or task.id}-0", "url": view.url, "duration": task.seconds}
        )
    return {
        "task_id": task.upstream_id or task.id,
        "task_status": _status(NATIVE_WORDS[Provider.KLING], view),
        "task_status_msg": task.error.message if failed and task.error is not None else "",
        "task_info": {"external_task_id": external} if isinstance(external, str) else {},
        "created_at": int(task.created_at * 1000),
        "updated_at": int(task.completed_at * 1000),
        "task_result": {"videos": videos},
    }


#: Providers that call ``callback_url`` themselves, with a body of their own;
#: the others' callbacks carry the gateway's job object.
CALLBACK_BODIES: Mapping[Provider, Callable[[Task, View], Json]] = MappingProxyType(
    {Provider.VIDU: _vidu_callback_body, Provider.KLING: _kling_callback_body}
)


_STATUS_RENDERERS: Mapping[Family, Callable[[Task, View], Json]] = MappingProxyType(
    {"videos": _video, "generations": generation_body, "tasks": _generation_task}
)


def status_body(family: Family, task: Task, view: View) -> Json:
    """The body of a status query on ``family``'s endpoint."""
    return _STATUS_RENDERERS[family](task, view)


def create_body(family: Family, task: Task, view: View) -> Json:
    """The answer to a create on ``family``'s endpoint; always in a queued word."""
    config = view.config
    created_at = render_timestamp(task.created_at, config)
    if family == "videos":
        if config.vocabulary == "openai":
            return _openai_video(task, view)
        status = NATIVE_WORDS[task.provider].queued
        return {
            "id": task.id,
            "object": "video",
            "model": task.model,
            "created_at": created_at,
            "status": case_word(status, config),
            "progress": render_progress(0, config),
        }
    if family == "generations":
        return {
            "task_id": task.id,
            "status": case_word(NATIVE_WORDS[task.provider].queued, config),
            "model": task.model,
            "created_at": created_at,
        }
    return {
        "id": task.id,
        "object": "generation.task",
        "model": task.model,
        "status": case_word("submitted", config),
        "progress": render_progress(0, config),
        "created_at": created_at,
    }


ErrorKind = Literal[
    "invalid_request",
    "unauthorized",
    "insufficient_quota",
    "not_found",
    "content_policy",
    "rate_limit",
    "server_error",
]

# kind -> (type, code) as OpenAI-style gateways name it, and the seed-003 type.
_ERRORS: Mapping[ErrorKind, tuple[str, str | None, str]] = MappingProxyType(
    {
        "invalid_request": ("invalid_request_error", None, "invalid_request"),
        "unauthorized": ("invalid_request_error", "invalid_api_key", "unauthorized"),
        "insufficient_quota": ("insufficient_quota", "insufficient_quota", "insufficient_quota"),
        "not_found": ("invalid_request_error", None, "task_not_found"),
        "content_policy": (
            "invalid_request_error",
            "content_policy_violation",
            "content_policy_violation",
        ),
        "rate_limit": ("rate_limit_exceeded", "rate_limit_exceeded", "rate_limit_exceeded"),
        "server_error": ("server_error", None, "internal_error"),
    }
)


def error_body(
    family: Family,
    kind: ErrorKind,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    flat: bool | None = None,
) -> Json:
    """An error in the family's shape: flat (seeds 000/002) or nested (seeds 001/003).

    ``flat`` overrides the family's usual shape (a /v1/videos 404 is flat in seed 000).
    """
    type_, default_code, task_type = _ERRORS[kind]
    if family == "tasks":
        type_, default_code = task_type, task_type
    fields: Json = {
        "code": code if code is not None else default_code,
        "message": message,
        "param": param,
        "type": type_,
    }
    if flat if flat is not None else family == "generations":
        return fields
    return {"error": fields}


def html_error(status: int, reason: str) -> str:
    """What a reverse proxy in front of a gateway answers instead of JSON."""
    title = f"{status} {reason}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
