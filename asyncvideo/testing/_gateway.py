"""The FakeGateway server: an API origin and a CDN origin on loopback."""

from __future__ import annotations

import asyncio
import http
import json
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import attrs
from aiohttp import BodyPartReader, web

from ._config import GatewayConfig
from ._faults import ActiveTasks, DropBudget, RequestKind, ScriptedFailures, TokenBuckets
from ._mp4 import video_file
from ._relays import (
    LITELLM_UNROUTABLE,
    NEW_API_CONTENT_NOT_FOUND,
    litellm_create,
    litellm_decode,
    litellm_error,
    litellm_id,
    litellm_status,
    new_api_content_not_ready,
    new_api_create,
    new_api_error,
    new_api_id,
    new_api_status,
    new_api_upstream_refusal,
)
from ._serve import stream_video
from ._stats import CapturedRequest, GatewayStats
from ._tasks import Family, Phase, Provider, Task, TaskError, new_task_id, provider_for
from ._webhooks import WebhookSender, is_loopback_url
from ._wire import (
    CALLBACK_BODIES,
    ErrorKind,
    View,
    create_body,
    error_body,
    html_error,
    status_body,
)

__all__ = ["FakeGateway"]

_Handler = Callable[["_Context"], Awaitable[web.StreamResponse]]
_Body = dict[str, object]
_Files = dict[str, tuple[str, str, bytes]]

_FAIL_MARKER = "[fail]"
# controller/video_proxy.go adds this to the upstream's headers.
_NEW_API_CONTENT_HEADERS = {"Cache-Control": "public, max-age=86400"}
_MODERATE_MARKER = "[moderate]"
_SERVER_ERRORS = (500, 502, 503)
# Options that only take effect when the servers start.
_STARTUP_OPTIONS = frozenset({"host", "port", "cdn_port", "clock"})


@attrs.frozen
class _Route:
    method: str
    path: str
    kind: RequestKind
    family: Family
    handler: _Handler

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


@attrs.define
class _Context:
    request: web.Request
    route: _Route
    captured: CapturedRequest | None = None
    api_key: str = ""
    dropped: bool = False


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _dimensions(size: str) -> tuple[int, int] | None:
    for separator in ("x", "*", "\u00d7"):
        width, sep, height = size.lower().partition(separator)
        if sep and width.strip().isdigit() and height.strip().isdigit():
            return int(width), int(height)
    return None


def _metadata(value: object) -> dict[str, object]:
    # Seed 001 sends metadata as a JSON string in a form field; seed 002 as an object.
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _BadRequest("metadata must be a JSON object", "metadata") from None
    if not isinstance(value, dict):
        raise _BadRequest("metadata must be a JSON object", "metadata")
    return {str(k): v for k, v in value.items()}


def _text(body: _Body, name: str) -> str | None:
    value = body.get(name)
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _format_seconds(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


class FakeGateway:
    """A realistic video-generation gateway on loopback, for tests and benchmarks.

    It speaks the endpoints of seeds 000-003 (``/v1/videos``,
    ``/v1/video/generations``, ``/v1/videos/generations``) with each
    provider's status words, serves videos from a second origin (the CDN),
    and injects faults on demand. Jobs progress lazily from the clock, so a
    shared :class:`~asyncvideo._clock.ManualClock` fast-forwards them.

    Args:
        config: a :class:`GatewayConfig`; keyword ``overrides`` replace its fields.

    Example:
        >>> async with FakeGateway(api_key="sk-test", time_scale=0.001) as gw:  # doctest: +SKIP
        ...     print(gw.url, gw.cdn_url, gw.stats.creates)
    """

    def __init__(self, config: GatewayConfig | None = None, **overrides: Any) -> None:
        self._config = attrs.evolve(config or GatewayConfig(), **overrides)
        self._rng = random.Random(self._config.seed)
        self._stats = GatewayStats()
        self._peers: set[object] = set()  # client (host, port) pairs seen: one per connection
        self._tasks: dict[str, Task] = {}
        self._by_token: dict[str, Task] = {}
        self._idempotency: dict[tuple[str, str], Task] = {}
        self._creates_per_key: dict[str, int] = {}
        self._captured: deque[CapturedRequest] = deque(maxlen=self._config.capture_requests)
        self._buckets = TokenBuckets()
        self._active = ActiveTasks()
        self._scripted = ScriptedFailures()
        self._drops = DropBudget(self._config.drop_downloads)
        self._webhooks = WebhookSender(
            config=lambda: self._config, render=self._callback_body, stats=self._stats
        )
        self._runners: list[web.AppRunner] = []
        self._url = ""
        self._cdn_url = ""

    # -- public surface ---------------------------------------------------

    @property
    def config(self) -> GatewayConfig:
        return self._config

    @property
    def url(self) -> str:
        """The API origin, e.g. ``http://127.0.0.1:PORT`` (no trailing slash)."""
        return self._require_started(self._url)

    @property
    def cdn_url(self) -> str:
        """The CDN origin serving finished videos; a different port, so a different origin."""
        return self._require_started(self._cdn_url)

    @property
    def api_key(self) -> str:
        return self._config.api_key

    @property
    def stats(self) -> GatewayStats:
        return self._stats

    @property
    def tasks(self) -> dict[str, Task]:
        """Every task created, by id (live objects)."""
        return self._tasks

    @property
    def requests(self) -> list[CapturedRequest]:
        """The most recent ``capture_requests`` requests, oldest first (``/_sim`` excluded)."""
        return list(self._captured)

    def set_config(self, **changes: Any) -> GatewayConfig:
        """Change options at runtime, e.g. ``gw.set_config(rate_limit=5)``.

        ``time_scale`` and ``durations`` apply to tasks created afterwards;
        ``host``, ``port``, ``cdn_port`` and ``clock`` cannot change once started.
        """
        if self._runners and _STARTUP_OPTIONS & changes.keys():
            raise ValueError(f"cannot change {sorted(_STARTUP_OPTIONS & changes.keys())} now")
        self._config = attrs.evolve(self._config, **changes)
        if {"drop_download_after", "drop_downloads"} & changes.keys():
            self._drops = DropBudget(self._config.drop_downloads)
        if "capture_requests" in changes:
            self._captured = deque(self._captured, maxlen=self._config.capture_requests)
        if "seed" in changes:
            self._rng = random.Random(self._config.seed)
        return self._config

    def script_failures(
        self,
        kind: RequestKind,
        statuses: list[int],
        *,
        after_processing: bool = False,
    ) -> None:
        """Answer the next ``len(statuses)`` requests of ``kind`` with these statuses.

        Args:
            kind: ``"create"``, ``"status"``, ``"content"`` or ``"cdn"``.
            statuses: HTTP statuses in order; ``0`` closes the connection unanswered.
            after_processing: creates only: make the task first, then fail the
                answer (the ambiguous outcome an idempotency key resolves).

        Example:
            >>> gw.script_failures("status", [503, 500])  # doctest: +SKIP
        """
        self._scripted.add(kind, list(statuses), after_processing=after_processing)

    def video_content(self, task_id: str) -> bytes:
        """The exact bytes the gateway serves for ``task_id``."""
        task = self._tasks[task_id]
        return video_file(task.video_bytes, task.id).to_bytes()

    def video_url(self, task_id: str) -> str:
        """The task's CDN URL (valid once it has succeeded, until it expires)."""
        return f"{self.cdn_url}/files/{self._tasks[task_id].cdn_token}.mp4"

    def reset_stats(self) -> None:
        """Zero the counters and forget captured requests."""
        self._stats.reset()
        self._peers.clear()
        self._captured.clear()

    async def start(self) -> None:
        """Bind both origins and start serving."""
        if self._runners:
            raise RuntimeError("FakeGateway is already started")
        config = self._config
        try:
            self._url = await self._serve_app(self._api_app(), config.port)
            self._cdn_url = await self._serve_app(self._cdn_app(), config.cdn_port)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop serving, cancel pending webhooks and release the ports."""
        await self._webhooks.close()
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()

    async def __aenter__(self) -> FakeGateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        where = self._url or "not started"
        return f"<FakeGateway {where} tasks={len(self._tasks)}>"

    # -- servers ----------------------------------------------------------

    @staticmethod
    def _require_started(value: str) -> str:
        if not value:
            raise RuntimeError("FakeGateway is not started (use `async with` or `await start()`)")
        return value

    async def _serve_app(self, app: web.Application, port: int) -> str:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._runners.append(runner)
        host = self._config.host
        await web.TCPSite(runner, host, port).start()
        bound_port = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{bound_port}"

    def _api_app(self) -> web.Application:
        app = web.Application(client_max_size=128 * 1024 * 1024)
        routes = (
            _Route("POST", "/v1/videos", "create", "videos", self._create_video),
            _Route("GET", "/v1/videos/{task_id}", "status", "videos", self._status),
            _Route("GET", "/v1/videos/{task_id}/content", "content", "videos", self._content),
            _Route("POST", "/v1/video/generations", "create", "generations", self._create_json),
            _Route("GET", "/v1/video/generations/{task_id}", "status", "generations", self._status),
            _Route("POST", "/v1/videos/generations", "create", "tasks", self._create_json),
            _Route("GET", "/v1/videos/generations/{task_id}", "status", "tasks", self._status),
        )
        for route in routes:
            app.router.add_route(route.method, route.path, self._endpoint(route))
        app.router.add_get("/_sim/stats", self._sim_stats)
        app.router.add_post("/_sim/reset", self._sim_reset)
        app.router.add_post("/_sim/config", self._sim_config)
        # Everything else is a JSON 404 counted as "other", as a real gateway's would be.
        other = _Route("*", "/{tail:.*}", "other", "videos", self._unknown_path)
        app.router.add_route("*", other.path, self._endpoint(other, auth=False))
        return app

    def _cdn_app(self) -> web.Application:
        app = web.Application()
        route = _Route("GET", "/files/{token}.mp4", "cdn", "videos", self._cdn_file)
        app.router.add_get(route.path, self._endpoint(route, auth=False))
        return app

    # -- request pipeline ---------------------------------------------------

    def _endpoint(
        self, route: _Route, *, auth: bool = True
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._dispatch(request, route, auth=auth)

        return handle

    def _enter(self, request: web.Request, kind: RequestKind, label: str) -> CapturedRequest | None:
        stats = self._stats
        stats.requests[kind] += 1
        stats.routes[label] = stats.routes.get(label, 0) + 1
        if kind == "create":
            stats.create_requests += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None and peer not in self._peers:
            self._peers.add(peer)
            stats.connections += 1
        in_flight = stats.in_flight[kind] = stats.in_flight[kind] + 1
        if in_flight > stats.max_in_flight[kind]:
            stats.max_in_flight[kind] = in_flight
        if self._captured.maxlen == 0:
            return None
        captured = CapturedRequest(
            method=request.method,
            path=request.path,
            kind=kind,
            query=dict(request.query),
            headers=dict(request.headers),
        )
        self._captured.append(captured)
        return captured

    def _leave(self, kind: RequestKind, response: web.StreamResponse, dropped: bool) -> None:
        self._stats.in_flight[kind] -= 1
        if not dropped:
            self._stats.record_response(response.status)

    async def _dispatch(
        self, request: web.Request, route: _Route, *, auth: bool
    ) -> web.StreamResponse:
        ctx = _Context(request, route, self._enter(request, route.kind, route.label))
        response: web.StreamResponse = web.Response(status=500)
        try:
            await self._delay(route.kind)
            response = await self._guarded(ctx, auth=auth)
            if route.kind == "create" and self._config.create_answer_delay:
                await asyncio.sleep(self._config.create_answer_delay)  # real time, as latency
        except ConnectionError:
            # The client went away (killed, or gave up) before its answer: there
            # is no one to answer, and a server does not log that as its own error.
            ctx.dropped = True
        finally:
            self._leave(route.kind, response, ctx.dropped)
        if ctx.captured is not None and not ctx.dropped:
            ctx.captured.status = response.status
        return response

    async def _delay(self, kind: RequestKind) -> None:
        # Real time on purpose: a ManualClock shared with the client must not jump.
        latency = self._config.latency
        if latency and kind != "other":
            await asyncio.sleep(latency)

    async def _guarded(self, ctx: _Context, *, auth: bool) -> web.StreamResponse:
        config = self._config
        if auth:
            scheme, _, token = ctx.request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return self._error(ctx, 401, "unauthorized", "Missing bearer authentication.")
            if not config.accepts(token.strip()):
                return self._error(ctx, 401, "unauthorized", "Incorrect API key provided.")
            ctx.api_key = token.strip()
            if config.rate_limit is not None:
                now = config.clock.monotonic()
                wait = self._buckets.take(ctx.api_key, config.rate_limit, now)
                if wait > 0:
                    return self._error(
                        ctx,
                        429,
                        "rate_limit",
                        "Rate limit reached for requests; please retry later.",
                        headers=self._retry_headers(wait),
                    )
        failure = self._injected_failure(ctx.route.kind)
        if failure is not None:
            return self._fail(ctx, failure)
        try:
            return await ctx.route.handler(ctx)
        except _BadRequest as exc:
            return self._error(ctx, 400, "invalid_request", str(exc), param=exc.param)

    def _injected_failure(self, kind: RequestKind) -> int | None:
        if kind == "other":
            return None
        scripted = self._scripted.pop(kind)
        if scripted is not None:
            return scripted.status
        rate = self._config.error_rate_5xx
        if rate and kind != "cdn" and self._rng.random() < rate:
            return self._rng.choice(_SERVER_ERRORS)
        return None

    def _fail(self, ctx: _Context, status: int) -> web.StreamResponse:
        """Answer an injected failure: a status, or 0 to drop the connection."""
        if status == 0:
            ctx.dropped = True
            self._stats.dropped_connections += 1
            if ctx.request.transport is not None:
                ctx.request.transport.close()
            return web.Response(status=502)
        if ctx.route.kind == "cdn":
            return _s3_error(status, "InternalError", "Simulated failure.")
        kind: ErrorKind
        if status == 429:
            kind = "rate_limit"
        elif status == 401:
            kind = "unauthorized"
        elif status >= 500:
            kind = "server_error"
        else:
            kind = "invalid_request"
        headers = self._retry_headers(1.0) if status in (429, 503) else None
        return self._error(ctx, status, kind, f"Simulated failure ({status}).", headers=headers)

    def _retry_headers(self, wait: float) -> dict[str, str] | None:
        config = self._config
        mode = config.retry_after
        headers: dict[str, str] = {}
        if mode == "seconds":
            headers = {"Retry-After": str(max(1, math.ceil(wait)))}
        elif mode == "ms":
            headers = {"retry-after-ms": str(max(1, math.ceil(wait * 1000)))}
        if config.profile == "litellm":
            # The proxy passes its upstream's headers on only under a prefix.
            headers = {f"llm_provider-{key.lower()}": value for key, value in headers.items()}
        return headers or None

    def _error(
        self,
        ctx: _Context,
        status: int,
        kind: ErrorKind,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        flat: bool | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        if self._config.html_errors:
            try:
                reason = http.HTTPStatus(status).phrase
            except ValueError:
                reason = "Error"
            return web.Response(
                status=status,
                text=html_error(status, reason),
                content_type="text/html",
                headers=headers,
            )
        body = error_body(ctx.route.family, kind, message, param=param, code=code, flat=flat)
        if self._config.profile == "litellm":
            body = litellm_error(status, body, self._model_in_path(ctx))
        return web.json_response(body, status=status, headers=headers)

    @staticmethod
    def _model_in_path(ctx: _Context) -> str:
        decoded = litellm_decode(ctx.request.match_info.get("task_id", ""))
        return decoded[0] if decoded and decoded[0] else "sora-2"

    def _json_error(self, ctx: _Context, status: int, body: dict[str, object]) -> web.Response:
        """An error body exactly as given (a profile's own shape)."""
        if self._config.html_errors:
            return self._error(ctx, status, "invalid_request", "")
        return web.json_response(body, status=status)

    def _not_found(self, ctx: _Context) -> web.Response:
        if self._config.profile == "new-api":
            # respondTaskError: any task the caller's key does not own, HTTP 400.
            return self._json_error(ctx, 400, new_api_error("task_not_exist", "task_not_exist"))
        # Seed 000: an unknown task is the flat error shape even on /v1/videos.
        return self._error(
            ctx,
            self._config.unknown_task_status,
            "not_found",
            "Task not found",
            param="task_id",
            flat=ctx.route.family != "tasks",
        )

    def _unroutable(self, ctx: _Context) -> web.Response | None:
        """LiteLLM's answer to an id it cannot route to a model (its status ids among them)."""
        if self._config.profile != "litellm":
            return None
        task_id = ctx.request.match_info["task_id"]
        if task_id in self._tasks:
            return None
        decoded = litellm_decode(task_id)
        if decoded is not None and decoded[0]:
            return None
        return web.json_response(LITELLM_UNROUTABLE, status=500)

    def _lookup(self, ctx: _Context) -> Task | None:
        task = self._tasks.get(ctx.request.match_info["task_id"])
        # Another key's task does not exist, as far as this key can tell.
        if task is None or task.api_key != ctx.api_key:
            return None
        return task

    def _view(self, task: Task, now: float) -> View:
        snapshot = task.snapshot(now)
        url = expires_at = None
        if snapshot.phase is Phase.SUCCEEDED:
            expires_at = task.completed_at + self._config.expires_after
            url = f"{self._cdn_url}/files/{task.cdn_token}.mp4"
        return View(snapshot, url, expires_at, self._config)

    def _callback_body(self, task: Task) -> dict[str, object]:
        """What a task's callback carries: the provider's own body, else the gateway's job."""
        now = max(self._config.clock.monotonic(), task.ends_at)
        render = CALLBACK_BODIES.get(task.provider)
        if render is not None:
            return render(task, self._view(task, now))
        return self._status_body(task.family, task, now)

    def _status_body(self, family: Family, task: Task, now: float) -> dict[str, object]:
        view = self._view(task, now)
        profile = self._config.profile
        if profile == "new-api":
            return new_api_status(family, task, view, self._url)
        if profile == "litellm":
            return litellm_status(family, task, view)
        return status_body(family, task, view)

    def _create_body(self, family: Family, task: Task, now: float) -> dict[str, object]:
        view = self._view(task, now)
        profile = self._config.profile
        if profile == "new-api":
            return new_api_create(task, view)
        if profile == "litellm":
            return litellm_create(family, task, view)
        return create_body(family, task, view)

    # -- body parsing -------------------------------------------------------

    async def _read_body(self, ctx: _Context) -> tuple[_Body, _Files]:
        """Fields and uploads from a multipart, urlencoded or JSON body."""
        request = ctx.request
        body: _Body = {}
        files: _Files = {}
        content_type = request.content_type
        if content_type == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or not part.name:
                    continue
                if part.filename is not None:
                    mime = part.headers.get("Content-Type", "application/octet-stream")
                    files[part.name] = (part.filename, mime, bytes(await part.read()))
                else:
                    body[part.name] = await part.text()
        elif content_type == "application/x-www-form-urlencoded":
            form = await request.post()
            body = {key: value for key, value in form.items() if isinstance(value, str)}
        elif request.can_read_body:
            try:
                parsed = await request.json()
            except ValueError:
                raise _BadRequest("The request body is not valid JSON.") from None
            if not isinstance(parsed, dict):
                raise _BadRequest("The request body must be a JSON object.")
            body = parsed
            if ctx.captured is not None:
                ctx.captured.json = parsed
        if ctx.captured is not None:
            ctx.captured.form = {k: v for k, v in body.items() if isinstance(v, str)}
            ctx.captured.files = files
        return body, files

    # -- creates ------------------------------------------------------------

    async def _create_video(self, ctx: _Context) -> web.StreamResponse:
        body, files = await self._read_body(ctx)
        prompt, model, provider = self._prompt_and_model(body, default_model="sora-2")
        metadata = _metadata(body.get("metadata"))
        seconds = _text(body, "seconds") or "4"
        size = _text(body, "size") or _text(body, "resolution") or "720x1280"
        width, height = _dimensions(size) or (None, None)
        params: dict[str, object] = {
            "duration": _number(seconds),
            "fps": 30,
            "width": width,
            "height": height,
            "seed": _number(metadata.get("seed")),
            "metadata": metadata,
        }
        if "input_reference" in files:
            filename, mime, data = files["input_reference"]
            params["input_reference"] = {"filename": filename, "type": mime, "bytes": len(data)}
        callback = _text(body, "callback_url") or _text(metadata, "callback_url")
        return await self._create(ctx, prompt, model, provider, seconds, size, params, callback)

    async def _create_json(self, ctx: _Context) -> web.StreamResponse:
        body, _ = await self._read_body(ctx)
        prompt, model, provider = self._prompt_and_model(body, default_model=None)
        metadata = _metadata(body.get("metadata"))
        duration = _number(body.get("duration")) or _number(metadata.get("duration")) or 5.0
        width = _number(body.get("width"))
        height = _number(body.get("height"))
        size = _text(body, "size")
        if (width is None or height is None) and size:
            width, height = _dimensions(size) or (width, height)
        width, height = int(width or 1280), int(height or 720)
        seed = _number(body.get("seed"))
        if seed is None:
            seed = _number(metadata.get("seed"))
        params: dict[str, object] = {
            "duration": duration,
            "fps": int(_number(body.get("fps")) or 30),
            "width": width,
            "height": height,
            "seed": int(seed) if seed is not None else self._rng.randrange(2**31),
            "metadata": metadata,
            "image": _text(body, "image") is not None,
            "n": body.get("n"),
        }
        callback = _text(body, "callback_url") or _text(metadata, "callback_url")
        seconds = _format_seconds(duration)
        return await self._create(
            ctx, prompt, model, provider, seconds, size or f"{width}x{height}", params, callback
        )

    @staticmethod
    def _prompt_and_model(body: _Body, *, default_model: str | None) -> tuple[str, str, Provider]:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _BadRequest("Missing required parameter: 'prompt'.", "prompt")
        model = _text(body, "model") or default_model
        if model is None:
            raise _BadRequest("Missing required parameter: 'model'.", "model")
        provider = provider_for(model)
        if provider is None:
            raise _BadRequest(f"Unsupported model: {model!r}.", "model")
        return prompt, model, provider

    async def _create(
        self,
        ctx: _Context,
        prompt: str,
        model: str,
        provider: Provider,
        seconds: str,
        size: str,
        params: dict[str, object],
        callback_url: str | None,
    ) -> web.StreamResponse:
        config = self._config
        stats = self._stats
        family = ctx.route.family
        status = config.create_status or (
            201 if family == "videos" and config.profile == "seeds" else 200
        )
        key = ctx.api_key
        now = config.clock.monotonic()
        idempotency_key = ctx.request.headers.get("Idempotency-Key")
        if idempotency_key:
            existing = self._idempotency.get((key, idempotency_key))
            if existing is not None:
                stats.idempotency_replays += 1
                return web.json_response(self._create_body(family, existing, now), status=status)
        if _MODERATE_MARKER in prompt and config.profile == "new-api":
            upstream = error_body(
                "videos", "content_policy", "Your request was rejected by the content policy."
            )
            return self._json_error(ctx, 422, new_api_upstream_refusal(upstream))
        if _MODERATE_MARKER in prompt:
            return self._error(
                ctx,
                422,
                "content_policy",
                "Your request was rejected by the content policy.",
                param="prompt",
            )
        created = self._creates_per_key.get(key, 0)
        if config.quota is not None and created >= config.quota:
            return self._error(
                ctx, 402, "insufficient_quota", "You have run out of quota for video generation."
            )
        if config.max_concurrent_tasks is not None:
            active = self._active.count(key, now)
            if active >= config.max_concurrent_tasks:
                next_end = self._active.next_end(key)
                wait = next_end - now if next_end is not None else 1.0
                return self._error(
                    ctx,
                    429,
                    "rate_limit",
                    f"Too many concurrent tasks ({active}); wait for one to finish.",
                    code="concurrency_limit_exceeded",
                    headers=self._retry_headers(wait),
                )

        task = self._new_task(ctx, prompt, model, provider, seconds, size, params, now)
        task.idempotency_key = idempotency_key or None
        self._creates_per_key[key] = created + 1
        stats.creates += 1
        stats.creates_by_model[model] = stats.creates_by_model.get(model, 0) + 1
        self._active.add(key, task.ends_at)
        active_now = self._active.count(key, now)
        if active_now > stats.max_active_tasks.get(key, 0):
            stats.max_active_tasks[key] = active_now
        if idempotency_key:
            self._idempotency[(key, idempotency_key)] = task
        if callback_url and is_loopback_url(callback_url):
            task.callback_url = callback_url
            self._webhooks.watch(task)

        after = self._scripted.pop("create", after_processing=True)
        if after is not None:
            return self._fail(ctx, after.status)
        return web.json_response(self._create_body(family, task, now), status=status)

    def _new_task(
        self,
        ctx: _Context,
        prompt: str,
        model: str,
        provider: Provider,
        seconds: str,
        size: str,
        params: dict[str, object],
        now: float,
    ) -> Task:
        config = self._config
        rng = self._rng
        wall = config.clock.time()
        upstream_id = new_task_id(provider, ctx.route.family, rng, wall)
        task_id = self._public_id(upstream_id, model)
        while task_id in self._tasks:
            upstream_id = new_task_id(provider, ctx.route.family, rng, wall)
            task_id = self._public_id(upstream_id, model)
        duration = self._sample_duration(model)
        fails = _FAIL_MARKER in prompt or (
            config.failure_rate > 0 and rng.random() < config.failure_rate
        )
        task = Task(
            id=task_id,
            provider=provider,
            model=model,
            family=ctx.route.family,
            api_key=ctx.api_key,
            prompt=prompt,
            seconds=seconds,
            size=size,
            params=params,
            created_mono=now,
            created_at=wall,
            duration=duration,
            run_time=duration * config.time_scale,
            outcome=Phase.FAILED if fails else Phase.SUCCEEDED,
            error=TaskError("generation_failed", "The video could not be generated (simulated).")
            if fails
            else None,
            video_bytes=config.video_bytes,
            cdn_token=f"{rng.getrandbits(128):032x}",
            row_id=len(self._tasks) + 1,
            upstream_id=upstream_id,
        )
        self._tasks[task_id] = task
        self._by_token[task.cdn_token] = task
        return task

    def _public_id(self, upstream_id: str, model: str) -> str:
        """The id clients see: the provider's own, or the one a relay or proxy makes of it."""
        profile = self._config.profile
        if profile == "new-api":
            return new_api_id(self._rng)
        if profile == "litellm":
            return litellm_id(upstream_id, model)
        return upstream_id

    def _sample_duration(self, model: str) -> float:
        spec = self._config.durations
        if callable(spec):
            return max(0.0, float(spec(model, self._rng)))
        if isinstance(spec, tuple):
            return self._rng.uniform(*spec)
        return float(spec)

    # -- status and content ---------------------------------------------------

    async def _status(self, ctx: _Context) -> web.StreamResponse:
        unroutable = self._unroutable(ctx)
        if unroutable is not None:
            return unroutable
        task = self._lookup(ctx)
        if task is None:
            return self._not_found(ctx)
        config = self._config
        body = self._status_body(ctx.route.family, task, config.clock.monotonic())
        headers = None
        if config.poll_after_ms is not None:
            headers = {"openai-poll-after-ms": str(config.poll_after_ms)}
        return web.json_response(body, headers=headers)

    async def _content(self, ctx: _Context) -> web.StreamResponse:
        config = self._config
        unroutable = self._unroutable(ctx)
        if unroutable is not None:
            return unroutable
        task = self._lookup(ctx)
        if task is None:
            if config.profile == "new-api":
                return self._json_error(ctx, 404, NEW_API_CONTENT_NOT_FOUND)
            return self._not_found(ctx)
        variant = ctx.request.query.get("variant", "video")
        if variant not in ("video", "mp4"):
            raise _BadRequest(f"Variant {variant!r} is not available.", "variant")
        now = config.clock.monotonic()
        view = self._view(task, now)
        # Within content_lag of success the content side has not caught up yet
        # (new-api serves /content from its row, which its poller updates later).
        lagging = now < task.ends_at + config.effective_content_lag
        if view.snapshot.phase is not Phase.SUCCEEDED or lagging:
            if config.profile == "new-api":
                word = "FAILURE" if view.snapshot.phase is Phase.FAILED else "IN_PROGRESS"
                return self._json_error(ctx, 400, new_api_content_not_ready(word))
            return self._error(
                ctx,
                400,
                "invalid_request",
                "Video is not ready yet: it has not completed successfully.",
                code="video_not_ready",
            )
        if view.expires_at is not None and config.clock.time() >= view.expires_at:
            return self._error(
                ctx, 404, "not_found", "The video content has expired.", code="video_expired"
            )
        if config.cdn_redirect and view.url is not None:
            return web.Response(status=302, headers={"Location": view.url})
        return await self._stream(ctx.request, task, filename=f"{task.id}.mp4")

    async def _stream(
        self,
        request: web.Request,
        task: Task,
        *,
        filename: str | None,
        chunk_delay: float = 0.0,
    ) -> web.StreamResponse:
        config = self._config
        drop_after = config.drop_download_after
        rate = config.drop_download_rate
        if drop_after is not None and rate < 1.0 and self._rng.random() >= rate:
            drop_after = None
        if drop_after is not None and not self._drops.consume():
            drop_after = None
        return await stream_video(
            request,
            video_file(task.video_bytes, task.id),
            stats=self._stats,
            chunk_size=config.chunk_size,
            drop_after=drop_after,
            drop_stall=config.drop_stall,
            filename=filename,
            gzip=self._gzips(request, task),
            extra_headers=_NEW_API_CONTENT_HEADERS if config.profile == "new-api" else None,
            chunk_delay=chunk_delay,
        )

    def _gzips(self, request: web.Request, task: Task) -> bool:
        config = self._config
        if config.content_encoding is not None:
            return config.content_encoding == "gzip"
        # LiteLLM's gzip middleware: any body of 500 bytes or more, if the client accepts gzip.
        accepted = request.headers.get("Accept-Encoding", "").lower()
        return config.profile == "litellm" and "gzip" in accepted and task.video_bytes >= 500

    async def _unknown_path(self, ctx: _Context) -> web.StreamResponse:
        request = ctx.request
        return self._error(
            ctx, 404, "invalid_request", f"Invalid URL ({request.method} {request.path})."
        )

    # -- CDN origin -----------------------------------------------------------

    async def _cdn_file(self, ctx: _Context) -> web.StreamResponse:
        request = ctx.request
        if "Authorization" in request.headers:
            self._stats.cdn_requests_with_auth += 1
        task = self._by_token.get(request.match_info["token"])
        config = self._config
        view = self._view(task, config.clock.monotonic()) if task is not None else None
        if task is None or view is None or view.snapshot.phase is not Phase.SUCCEEDED:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if view.expires_at is not None and config.clock.time() >= view.expires_at:
            return _s3_error(403, "AccessDenied", "Request has expired")
        return await self._stream(
            request, task, filename=None, chunk_delay=self._config.cdn_chunk_delay
        )

    # -- /_sim ----------------------------------------------------------------

    async def _sim_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._stats.to_dict())

    async def _sim_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset_stats()
        return web.json_response({"ok": True})

    async def _sim_config(self, request: web.Request) -> web.StreamResponse:
        """Change scalar options from another process (benchmarks run the gateway apart)."""
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise TypeError("expected a JSON object")
            if "durations" in changes and isinstance(changes["durations"], list):
                changes["durations"] = tuple(changes["durations"])
            if "extra_api_keys" in changes:
                changes["extra_api_keys"] = tuple(changes["extra_api_keys"])
            forbidden = _STARTUP_OPTIONS & changes.keys()
            if forbidden:
                raise TypeError(f"cannot change {sorted(forbidden)}")
            config = self.set_config(**changes)
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": {"message": str(exc)}}, status=400)
        return web.json_response(
            {
                field.name: getattr(config, field.name)
                for field in attrs.fields(GatewayConfig)
                if isinstance(getattr(config, field.name), str | int | float | bool | None)
            }
        )


def _s3_error(status: int, code: str, message: str) -> web.Response:
    # CDNs in front of object stores answer errors in S3's XML.
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")
