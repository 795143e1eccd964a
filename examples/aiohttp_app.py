"""An aiohttp.web app that makes videos: one ``Client``, refs, streaming, webhooks.

Routes:

    POST /videos                {"prompt": ..., "model": ...}  -> 202 {"ref": ...}
    GET  /videos/{ref}          the job as JSON (state, progress, ...)
    GET  /videos/{ref}/content  the clip, streamed from the gateway (no temporary file)
    POST /hooks/video           the gateway's callbacks (asyncvideo.webhooks' sub-app)

``POST /videos`` answers at once with ``job.ref`` and follows the job in the
background (one ``client.wait`` per job, entries in the client's one poller);
with a webhook URL a verified callback wakes the job at once.

Run it against the simulator, from the repository root::

    python -m asyncvideo.testing --port 8000 --time-scale 0.05 &
    ASYNCVIDEO_API_KEY=sk-asyncvideo-test ASYNCVIDEO_BASE_URL=http://127.0.0.1:8000 \\
    VIDEO_WEBHOOK_URL=http://127.0.0.1:8080/hooks/video \\
        python examples/aiohttp_app.py

``tests/test_examples_web.py`` runs this app against the FakeGateway.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from asyncvideo import Client, Job, webhooks
from asyncvideo.errors import (
    AsyncVideoError,
    CreateOutcomeUnknown,
    DownloadError,
    NotFoundError,
    ValidationError,
)

logger = logging.getLogger("video_app")


class Videos:
    """What the app keeps for its lifetime: the client, a wait per job, the finished jobs."""

    def __init__(self, client: Client) -> None:
        self.client = client
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
            raise web.HTTPNotFound(text="no such video") from exc


VIDEOS = web.AppKey("videos", Videos)


async def create_video(request: web.Request) -> web.Response:
    videos = request.app[VIDEOS]
    body = await request.json()
    try:
        job = await videos.client.submit(
            prompt=body.get("prompt"), model=body.get("model", "viduq1")
        )
    except ValidationError as exc:  # refused before anything was sent or paid for
        raise web.HTTPUnprocessableEntity(text=str(exc)) from exc
    except CreateOutcomeUnknown as exc:  # a task may exist: never submit again blindly
        raise web.HTTPServiceUnavailable(
            text=f"outcome unknown; idempotency key {exc.idempotency_key}"
        ) from exc
    videos.follow(job)
    return web.json_response({"ref": job.ref}, status=202)


async def video_status(request: web.Request) -> web.Response:
    job = await request.app[VIDEOS].job(request.match_info["ref"])
    return web.json_response(job.to_dict())


async def video_content(request: web.Request) -> web.StreamResponse:
    videos = request.app[VIDEOS]
    job = await videos.job(request.match_info["ref"])
    if not job.succeeded:
        raise web.HTTPConflict(text=f"video is {job.state.value}, not ready")
    response = web.StreamResponse()
    try:
        async with videos.client.open_video(job) as stream:  # errors raise before any byte
            response.content_type = stream.content_type
            if stream.content_length is not None:
                response.content_length = stream.content_length
            await response.prepare(request)
            async for chunk in stream:
                await response.write(chunk)
    except DownloadError as exc:
        if response.prepared:
            raise  # the headers are sent: aiohttp cuts the connection, the caller sees it
        raise web.HTTPBadGateway(text=str(exc)) from exc
    await response.write_eof()
    return response


def create_app(**client_options: Any) -> web.Application:
    """The app; ``client_options`` go to ``Client`` (default: the environment's settings)."""
    client_options.setdefault("webhook_url", os.environ.get("VIDEO_WEBHOOK_URL"))
    client_options.setdefault("webhook_secret", os.environ.get("VIDEO_WEBHOOK_SECRET"))
    # One client for the app's life: one connection pool, one poller, shared rate limits.
    # Making it opens nothing; the first request does, and the cleanup context closes it.
    client = Client(**client_options)

    async def client_context(app: web.Application) -> AsyncIterator[None]:
        async with client:
            app[VIDEOS] = Videos(client)
            yield

    app = web.Application()
    app.cleanup_ctx.append(client_context)
    app.add_routes(
        [
            web.post("/videos", create_video),
            web.get("/videos/{ref}", video_status),
            web.get("/videos/{ref}/content", video_content),
        ]
    )
    # Verifies each callback with the client's webhook secret and wakes the job it names.
    app.add_subapp("/hooks/video", webhooks.aiohttp_app(client))
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=8080)
