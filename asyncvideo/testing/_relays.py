"""Bodies as the real gateway code bases send them: the new-api relay and the LiteLLM proxy.

The seeds describe documented shapes; gateways people run are built on a few
public code bases whose answers differ in ways a client must survive. Each
profile here reproduces, field for field, what that code base sends. Facts
were read from their source (no code is taken from it); LiteLLM's are listed
at the head of its section below, new-api's here.

new-api (``QuantumNous/new-api``):

- ``router/video-router.go``: ``POST /v1/videos`` and ``POST /v1/video/generations``
  both answer the same OpenAI-style video object (``dto/openai_video.go``
  ``OpenAIVideo``), HTTP 200, with a public id ``task_`` + 32 characters
  (``model.GenerateTaskID``) in both ``id`` and ``task_id``; the upstream id
  stays private.
- ``GET /v1/video/generations/{id}`` (``relay/relay_task.go``
  ``videoFetchByIDRespBodyBuilder``) wraps ``dto/task.go`` ``TaskDto`` in
  ``{"code": "success", "message": "", "data": ...}``: the numeric row ``id``
  beside the string ``task_id``, upper-case ``model/task.go`` ``TaskStatus``
  words (``NOT_START``, ``QUEUED``, ``IN_PROGRESS``, ``SUCCESS``,
  ``FAILURE``), ``progress`` as ``"30%"``, ``submit_time``/``finish_time`` in
  seconds, the video under ``result_url``, the upstream's last body under ``data``.
- ``GET /v1/videos/{id}`` converts per provider (``ConvertToOpenAIVideo``):
  ``TaskStatus.ToVideoStatus`` (``NOT_START`` becomes ``"unknown"``),
  ``progress`` an int, the URL under ``metadata.url`` (``""`` until there is
  one), ``completed_at`` from the row's update time (set while running), no
  ``task_id`` for Wan; Kling's times in milliseconds. Sora answers the
  upstream's own body with only ``id`` replaced, and no URL.
- ``controller/relay.go`` ``respondTaskError``: errors are
  ``{"code", "message", "data": null}``; an unknown task is HTTP 400
  ``task_not_exist``; an upstream refusal is ``fail_to_fetch_task`` with the
  upstream's body, as a JSON string, for ``message``, under the upstream's status.
- ``controller/video_proxy.go`` ``VideoProxy``: ``/content`` answers 404
  "Task not found", or 400 "Task is not completed yet, current status: …"
  (OpenAI-style error, no code) until the relay's poller has caught up, and
  adds ``Cache-Control``. Sora's ``result_url`` is this proxy endpoint.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import string
from collections.abc import Mapping
from types import MappingProxyType

from ._tasks import Family, Phase, Provider, Snapshot, Task
from ._wire import (
    View,
    case_word,
    create_body,
    generation_body,
    native_video_body,
    render_progress,
    render_timestamp,
    status_body,
)

__all__ = [
    "LITELLM_UNROUTABLE",
    "NEW_API_CONTENT_NOT_FOUND",
    "litellm_create",
    "litellm_decode",
    "litellm_error",
    "litellm_id",
    "litellm_status",
    "new_api_content_not_ready",
    "new_api_create",
    "new_api_error",
    "new_api_id",
    "new_api_status",
    "new_api_upstream_refusal",
]

Json = dict[str, object]

_ID_ALPHABET = string.ascii_letters + string.digits

#: ``/content`` for a task the relay does not know (``VideoProxy``): OpenAI-style, no code.
NEW_API_CONTENT_NOT_FOUND: Json = {
    "error": {"message": "Task not found", "type": "invalid_request_error"}
}


def new_api_id(rng: random.Random) -> str:
    """A public task id as ``model.GenerateTaskID`` makes them: ``task_`` + 32 characters."""
    return "task_" + "".join(rng.choices(_ID_ALPHABET, k=32))


def _task_status(snapshot: Snapshot) -> str:
    # The relay's poller: NOT_START until its first pass, then the upstream's phase.
    phase = snapshot.phase
    if phase is Phase.QUEUED:
        return "NOT_START" if snapshot.fraction < 0.05 else "QUEUED"
    if phase is Phase.RUNNING:
        return "IN_PROGRESS"
    return "SUCCESS" if phase is Phase.SUCCEEDED else "FAILURE"


# TaskStatus.ToVideoStatus: anything it does not list (NOT_START too) is "unknown".
_VIDEO_STATUS: Mapping[str, str] = MappingProxyType(
    {
        "QUEUED": "queued",
        "SUBMITTED": "queued",
        "IN_PROGRESS": "in_progress",
        "SUCCESS": "completed",
        "FAILURE": "failed",
    }
)


def _percent(snapshot: Snapshot) -> str:
    status = _task_status(snapshot)
    if status == "NOT_START":
        return "0%"
    if status == "QUEUED":
        return "20%"
    return f"{snapshot.progress}%"


def _upstream_body(task: Task, view: View) -> Json:
    # The relay keeps the upstream's last answer under `data`, with the upstream's id.
    if task.family == "videos":
        body = native_video_body(task, view)
        body["id"] = task.upstream_id
    else:
        body = generation_body(task, view)
        body["task_id"] = task.upstream_id
    return body


def _result_url(task: Task, view: View, api_url: str) -> str | None:
    if view.snapshot.phase is not Phase.SUCCEEDED:
        return None
    if task.provider is Provider.SORA:  # taskcommon.BuildProxyURL: the relay's own /content
        return f"{api_url}/v1/videos/{task.id}/content"
    return view.url


def _task_dto(task: Task, view: View, api_url: str) -> Json:
    config = view.config
    snapshot = view.snapshot
    status = _task_status(snapshot)
    started = task.created_at + task.run_time * 0.1
    dto: Json = {
        "id": task.row_id,
        "created_at": int(task.created_at),
        "updated_at": int(task.completed_at if snapshot.phase.is_terminal else task.created_at),
        "task_id": task.id,
        "platform": "50",
        "user_id": 1,
        "group": "default",
        "channel_id": 1,
        "quota": 250000,
        "action": "textGenerate",
        "status": case_word(status, config),
        "fail_reason": task.error.message if status == "FAILURE" and task.error else "",
        "submit_time": int(task.created_at),
        "start_time": int(started) if snapshot.phase is not Phase.QUEUED else 0,
        "finish_time": int(task.completed_at) if snapshot.phase.is_terminal else 0,
        "progress": _percent(snapshot),
        "properties": {"input": task.prompt, "origin_model_name": task.model},
        "data": _upstream_body(task, view),
    }
    url = _result_url(task, view, api_url)
    if url is not None:
        dto["result_url"] = url
    return {"code": "success", "message": "", "data": dto}


def _video_object(task: Task, view: View) -> Json:
    config = view.config
    snapshot = view.snapshot
    if task.provider is Provider.SORA:
        # The upstream's own body, only its id replaced by the public one.
        upstream = native_video_body(task, view)
        upstream["id"] = task.id
        upstream.pop("url", None)
        return upstream
    status = _VIDEO_STATUS.get(_task_status(snapshot), "unknown")
    terminal = snapshot.phase.is_terminal
    kling = task.provider is Provider.KLING
    updated = task.completed_at if terminal else config.clock.time()
    body: Json = {
        "id": task.id,
        "object": "video",
        "model": "" if task.provider in (Provider.KLING, Provider.JIMENG) else task.model,
        "status": case_word(status, config),
        "progress": snapshot.progress,
        "created_at": int(task.created_at * 1000) if kling else int(task.created_at),
        "completed_at": int(updated * 1000) if kling else int(updated),
        "metadata": {"url": view.url or ""},
    }
    if task.provider is not Provider.WAN:  # the ali converter leaves task_id out
        body["task_id"] = task.id
    if snapshot.phase is Phase.FAILED and task.error is not None:
        body["error"] = {"code": "task_failed", "message": task.error.message}
    return body


def new_api_status(family: Family, task: Task, view: View, api_url: str) -> Json:
    """A status answer on ``family``'s endpoint as the relay gives it."""
    if family == "generations":
        return _task_dto(task, view, api_url)
    if family == "videos":
        return _video_object(task, view)
    # The relay has no generation.task family; keep the seed's shape there.
    return status_body(family, task, view)


def new_api_create(task: Task, view: View) -> Json:
    """The create answer on both create paths: a queued video object with the public id."""
    config = view.config
    body: Json = {
        "id": task.id,
        "task_id": task.id,
        "object": "video",
        "model": task.model,
        "status": case_word("queued", config),
        "progress": render_progress(0, config),
        "created_at": render_timestamp(task.created_at, config),
    }
    if task.provider is Provider.SORA:
        body["seconds"] = task.seconds
        body["size"] = task.size
    return body


def new_api_error(code: str, message: str) -> Json:
    """``dto.TaskError`` as the client sees it."""
    return {"code": code, "message": message, "data": None}


def new_api_upstream_refusal(upstream: Json) -> Json:
    """An upstream's refusal of a create, relayed: its whole body is the message."""
    return new_api_error("fail_to_fetch_task", json.dumps(upstream, separators=(",", ":")))


def new_api_content_not_ready(status: str) -> Json:
    """``/content`` while the relay's row still says ``status`` (an upper-case TaskStatus)."""
    return {
        "error": {
            "message": f"Task is not completed yet, current status: {status}",
            "type": "invalid_request_error",
        }
    }


# -- LiteLLM proxy ----------------------------------------------------------------------
#
# Facts from LiteLLM 1.106 (its source ships in its package) and from running it
# in front of this gateway:
#
# - ``litellm/types/videos/utils.py`` ``encode_video_id_with_provider``: the id a
#   client sees is ``video_`` + base64 of
#   ``litellm:custom_llm_provider:<provider>;model_id:<model>;video_id:<upstream>``.
#   The create answer (``transform_video_create_response``) carries the model;
#   every status answer (``transform_video_status_retrieve_response``) re-encodes
#   the upstream id with an empty model, a different id that the proxy cannot
#   route: asked with it, it falls back to api.openai.com and answers 500.
# - ``litellm/types/videos/main.py`` ``VideoObject``: status answers keep a fixed
#   set of fields and drop the rest (a URL included); creates answer 200.
# - ``litellm/proxy/middleware/gzip_middleware.py``: a body of 500 bytes or more
#   is gzipped when the client accepts gzip, with ``Content-Length`` the encoded
#   size; ``Range`` is ignored and no ``ETag`` is sent.
# - ``litellm/proxy/common_request_processing.py``: errors are
#   ``{"error": {"message", "type", "param": null, "code": "<status>"}}`` with
#   the upstream's error body embedded, as JSON text, inside ``message``.

_LITELLM_PREFIX = "video_"
_VIDEO_OBJECT_FIELDS = (
    "id",
    "object",
    "status",
    "created_at",
    "completed_at",
    "expires_at",
    "error",
    "progress",
    "remixed_from_video_id",
    "seconds",
    "size",
    "model",
)
_LITELLM_ERROR_TYPES: Mapping[int, tuple[str, str]] = MappingProxyType(
    {
        400: ("invalid_request_error", "BadRequestError"),
        401: ("authentication_error", "AuthenticationError"),
        404: ("invalid_request_error", "NotFoundError"),
        422: ("invalid_request_error", "UnprocessableEntityError"),
        429: ("throttling_error", "RateLimitError"),
    }
)


def litellm_id(upstream_id: str, model: str) -> str:
    """The id LiteLLM hands out for ``upstream_id``; ``model`` is ``""`` on status answers."""
    plain = f"litellm:custom_llm_provider:openai;model_id:{model};video_id:{upstream_id}"
    return _LITELLM_PREFIX + base64.b64encode(plain.encode()).decode("ascii")


def litellm_decode(video_id: str) -> tuple[str, str] | None:
    """``(model, upstream id)`` from a LiteLLM id, or ``None`` if it is not one."""
    if not video_id.startswith(_LITELLM_PREFIX):
        return None
    try:
        plain = base64.b64decode(video_id[len(_LITELLM_PREFIX) :], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    fields = dict(part.partition(":")[::2] for part in plain.split(";"))
    if "video_id" not in fields:
        return None
    return fields.get("model_id", ""), fields["video_id"]


def _rename(body: Json, family: Family, new_id: str) -> Json:
    body["task_id" if family == "generations" else "id"] = new_id
    return body


def _as_video_object(body: Json, usage: Json | None) -> Json:
    """``VideoObject``: its fixed fields, the rest dropped."""
    kept = {key: body.get(key) for key in _VIDEO_OBJECT_FIELDS}
    kept["usage"] = usage
    return kept


def litellm_status(family: Family, task: Task, view: View) -> Json:
    """A status answer through the proxy: the id re-encoded without the model."""
    body = _rename(status_body(family, task, view), family, litellm_id(task.upstream_id, ""))
    if family != "videos":
        # LiteLLM serves only /v1/videos; elsewhere its id and error habits are
        # applied to the gateway's own bodies, URL kept (there is no /content).
        return body
    return _as_video_object(body, None)


def litellm_create(family: Family, task: Task, view: View) -> Json:
    """A create answer through the proxy: the id carries the model."""
    body = _rename(create_body(family, task, view), family, task.id)
    if family != "videos":
        return body
    return _as_video_object(body, {"duration_seconds": float(task.seconds)})


def litellm_error(status: int, upstream: Json, model: str) -> Json:
    """An upstream error as the proxy relays it: the body becomes text inside its message."""
    type_, exception = _LITELLM_ERROR_TYPES.get(
        status, ("internal_server_error", "InternalServerError")
    )
    message = (
        f"litellm.{exception}: OpenAIException - {json.dumps(upstream)}\n\n"
        f"LiteLLM: model group '{model}' failed with the error above. No fallback was attempted."
    )
    return {"error": {"message": message, "type": type_, "param": None, "code": str(status)}}


#: What the proxy answers for an id it cannot route (it tries api.openai.com, offline).
LITELLM_UNROUTABLE: Json = {
    "error": {
        "message": "litellm.InternalServerError: InternalServerError: OpenAIException - "
        "Cannot connect to host api.openai.com:443 ssl:default [Connect call failed]",
        "type": "internal_server_error",
        "param": None,
        "code": "500",
    }
}
