"""The narrow face of a :class:`~asyncvideo.Client` that a batch sees.

A batch depends on ``_batch.BatchBackend``, not on ``Client``; this adapter
is the one place that maps the protocol onto a client's internals.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from ._models import Job, Limits, VideoRequest
from ._poller import PollListener, Watch
from ._polling import PollPolicy

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["ClientBackend"]


class ClientBackend:
    """The narrow face of a :class:`Client` that a batch sees (``_batch.BatchBackend``)."""

    __slots__ = ("_client",)

    def __init__(self, client: Client) -> None:
        self._client = client

    @property
    def limits(self) -> Limits:
        return self._client.limits

    @property
    def honours_idempotency_keys(self) -> bool:
        return self._client.gateway.honours_idempotency_keys

    async def submit(self, request: VideoRequest, /) -> Job:
        return await self._client.submit(request)

    async def get(
        self,
        task_id: str,
        *,
        model: str,
        provider: str | None = None,
        created_by: tuple[VideoRequest, str] | None = None,
    ) -> Job:
        job = await self._client.get(task_id, model=model, provider=provider)
        if created_by is not None:
            self._client._reattached(*created_by, job)
        return job

    async def download_to(self, job: Job, path: Path) -> int:
        return await self._client._download_file(job, path)

    def watch(
        self, job: Job, *, policy: PollPolicy, deadline: float, listener: PollListener
    ) -> Watch:
        return self._client._watch(job, policy=policy, deadline=deadline, listener=listener)

    def track(self, task: asyncio.Task[None], scope: anyio.CancelScope) -> None:
        self._client._track_batch(task, scope)
