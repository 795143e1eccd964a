"""Bodies as the real gateway code bases send them: the new-api relay and the LiteLLM proxy.

The seeds describe documented shapes; gateways people run are built on a few
public code bases whose answers differ in ways a client must survive. Each
profile here reproduces, field for field, what that code base sends. Facts
were read from their source (no code is taken from it):

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

import json
import random
import string
from collections.abc import Mapping
from types import MappingProxyType

from ._tasks import Family, Phase, Provider, Snapshot, Task
from ._wire import (
    View,
    case_word,
    generation_body,
    native_video_body,
    render_progress,
    render_timestamp,
    status_body,
)

__all__ = [
    "NEW_API_CONTENT_NOT_FOUND",
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
