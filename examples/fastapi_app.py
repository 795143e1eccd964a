"""A FastAPI app that makes videos: one ``Client`` for the app's life, refs, streaming, webhooks.

Routes:

    POST /videos                {"prompt": ..., "model": ...}  -> 202 {"ref": ...}
    GET  /videos/{ref}          the job as JSON (state, progress, ...)
    GET  /videos/{ref}/content  the clip, streamed from the gateway (no temporary file)
    POST /hooks/video           the gateway's callbacks, verified with the webhook secret

A clip takes minutes, so ``POST /videos`` answers at once with ``job.ref`` and
follows the job in the background: one ``client.wait`` per job, all of them
entries in the client's one poller. With a webhook URL, each job is polled only
at a long safety interval and a verified callback wakes it at once.

Run it against the simulator, from the repository root (``pip install -e '.[dev]'``)::

    python -m asyncvideo.testing --port 8000 --time-scale 0.05 &
    ASYNCVIDEO_API_KEY=sk-asyncvideo-test ASYNCVIDEO_BASE_URL=http://127.0.0.1:8000 \\
    VIDEO_WEBHOOK_URL=http://127.0.0.1:8080/hooks/video \\
        uvicorn examples.fastapi_app:app --port 8080

    curl -s -X POST localhost:8080/videos -H 'content-type: application/json' \\
        -d '{"prompt": "a red fox in snow", "model": "viduq1"}'
    curl -s localhost:8080/videos/<ref>
    curl -s -o fox.mp4 localhost:8080/videos/<ref>/content

``tests/test_examples_web.py`` runs this app under uvicorn against the FakeGateway.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask

from asyncvideo import Client, Job, webhooks
from asyncvideo.errors import (
    AsyncVideoError,
    CreateOutcomeUnknown,
    DownloadError,
    NotFoundError,
    ValidationError,
)

logger = logging.getLogger("video_app")


class NewVideo(BaseModel):
    prompt: str
    model: str = "viduq1"
    seconds: float | None = None


class Videos:
    """What the app keeps for its lifetime: the client, a wait per job, the finished jobs."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.receiver = webhooks.WebhookReceiver(client)
        #: finished jobs by ref; a stand-in for the app's own database
        self.finished: dict[str, Job] = {}
        self._waits: set[asyncio.Task[None]] = set()

    def follow(self, job: Job) -> None:
        """Wait for ``job`` in the background (a callback, or the poller, ends the wait)."""
        task = asyncio.create_task(self._wait(job))
        self._waits.add(task)
        task.add_done_callback(self._waits.discard)

    async def _wait(self, job: Job) -> None:
        try:
            self.finished[job.ref] = await self.client.wait(job)
        except AsyncVideoError as exc:  # a timeout or a final API error: the ref still works
            logger.warning("stopped following %s: %s", job.ref, exc)

    async def job(self, ref: str) -> Job:
        """The finished snapshot if the app has it, else one status query."""
        if ref in self.finished:
            return self.finished[ref]
        try:
            return await self.client.get(ref)
        except (ValidationError, NotFoundError) as exc:  # not a ref, or no such task
            raise HTTPException(404, "no such video") from exc


def create_app(**client_options: Any) -> FastAPI:
    """The app; ``client_options`` go to ``Client`` (default: the environment's settings)."""
    client_options.setdefault("webhook_url", os.environ.get("VIDEO_WEBHOOK_URL"))
    client_options.setdefault("webhook_secret", os.environ.get("VIDEO_WEBHOOK_SECRET"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One client for the app's life: one connection pool, one poller, shared rate limits.
        # Leaving it ends the background waits too.
        async with Client(**client_options) as client:
            app.state.videos = Videos(client)
            yield

    app = FastAPI(lifespan=lifespan)

    def videos(request: Request) -> Videos:
        found: Videos = request.app.state.videos
        return found

    @app.post("/videos", status_code=202)
    async def create_video(body: NewVideo, request: Request) -> dict[str, str]:
        service = videos(request)
        try:
            job = await service.client.submit(
                prompt=body.prompt, model=body.model, seconds=body.seconds
            )
        except ValidationError as exc:  # refused before anything was sent or paid for
            raise HTTPException(422, str(exc)) from exc
        except CreateOutcomeUnknown as exc:  # a task may exist: never submit again blindly
            raise HTTPException(
                503, f"outcome unknown; idempotency key {exc.idempotency_key}"
            ) from exc
        service.follow(job)
        return {"ref": job.ref}

    @app.get("/videos/{ref}")
    async def video_status(ref: str, request: Request) -> dict[str, object]:
        return (await videos(request).job(ref)).to_dict()

    @app.get("/videos/{ref}/content")
    async def video_content(ref: str, request: Request) -> StreamingResponse:
        service = videos(request)
        job = await service.job(ref)
        if not job.succeeded:
            raise HTTPException(409, f"video is {job.state.value}, not ready")
        # The stream stays open after this handler returns: Starlette sends it, then the
        # background task closes it (and frees the download slot), also on a disconnect.
        stack = AsyncExitStack()
        try:
            stream = await stack.enter_async_context(service.client.open_video(job))
        except DownloadError as exc:
            await stack.aclose()
            raise HTTPException(502, str(exc)) from exc
        headers = {}
        if stream.content_length is not None:
            headers["content-length"] = str(stream.content_length)
        return StreamingResponse(
            stream,
            media_type=stream.content_type,
            headers=headers,
            background=BackgroundTask(stack.aclose),
        )

    @app.post("/hooks/video")
    async def video_hook(request: Request) -> Response:
        result = await videos(request).receiver.handle(
            await request.body(), request.headers, request.query_params
        )
        return Response(status_code=result.status)

    return app


app = create_app()
