"""The public entry point: :class:`Client`."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import uuid
from collections.abc import AsyncIterable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Unpack
from urllib.parse import quote

import anyio
import attrs

from ._batch import Batch
from ._batch_run import _Run
from ._client_backend import ClientBackend
from ._clock import Clock, SystemClock
from ._destination import check_output, names_folder
from ._download import download_job, safe_filename
from ._events import EventHandler
from ._images import load_image
from ._jobref import looks_like_ref, read_ref
from ._logtext import printable
from ._models import Job, Limits, VideoRequest, VideoRequestFields
from ._poller import Poller, PollUpdate
from ._polling import PollPolicy, RetryPolicy
from ._profiles import GatewayProfile, resolve_gateway
from ._retry import RetryDecision
from ._states import JobState
from ._store import JobStore
from ._transport import (
    AiohttpTransport,
    AsyncTransport,
    ClientSession,
    FilePart,
    GatewayConnection,
    Timeouts,
)
from .errors import (
    ConfigurationError,
    CreateOutcomeUnknown,
    JobFailedError,
    ProtocolError,
    ValidationError,
)
from .providers import PROVIDERS, CreateBody, Provider, Router
from .providers._parse import DOT_SEGMENTS

__all__ = ["Client"]

logger = logging.getLogger("asyncvideo")


def _file_parts(body: CreateBody) -> dict[str, FilePart] | None:
    if not body.files:
        return None
    return {
        key: FilePart(image.data or b"", image.filename, image.content_type)
        for key, image in body.files.items()
    }


class Client:
    """An asyncio client for one video-generation gateway.

    One client holds one aiohttp connection pool; share it across the app and
    close it with ``async with`` or :meth:`aclose`.

    Args:
        api_key: the gateway key (default: ``$ASYNCVIDEO_API_KEY``). Sent only
            to the gateway's own origin; never logged or shown in reprs.
        base_url: the gateway (default: ``$ASYNCVIDEO_BASE_URL``).
        gateway: ``"default"``, ``"toapis"`` or a :class:`GatewayProfile`.
        limits: concurrency bounds (:class:`Limits`).
        poll_policy: when to poll (:class:`PollPolicy`).
        retry_policy: how transient failures are retried (:class:`RetryPolicy`).
        timeouts: network timeouts (:class:`Timeouts`).
        routes: extra model-prefix -> provider routes.
        clock: where time comes from (tests pass a ``ManualClock``).
        seed: seeds the jitter for reproducible schedules.

    Example:
        >>> async def main() -> None:  # doctest: +SKIP
        ...     async with Client(api_key="sk-...", base_url="https://gateway.example") as client:
        ...         path = await client.generate(prompt="a cat", model="sora-2", output="cat.mp4")
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        gateway: str | GatewayProfile = "default",
        limits: Limits | None = None,
        poll_policy: PollPolicy | None = None,
        retry_policy: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        routes: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        seed: int | None = None,
        transport: AsyncTransport | None = None,
        session: ClientSession | None = None,
    ) -> None:
        api_key = api_key or os.environ.get("ASYNCVIDEO_API_KEY")
        base_url = base_url or os.environ.get("ASYNCVIDEO_BASE_URL")
        if not api_key:
            raise ConfigurationError("no API key: pass api_key= or set ASYNCVIDEO_API_KEY")
        if not base_url or not base_url.lower().startswith(("http://", "https://")):
            raise ConfigurationError(
                "no gateway URL: pass base_url='https://...' or set ASYNCVIDEO_BASE_URL"
            )
        if transport is not None and session is not None:
            raise ConfigurationError("pass transport= or session=, not both")
        self.gateway = resolve_gateway(gateway)
        self.limits = limits or Limits()
        self.poll_policy = poll_policy or PollPolicy()
        self.retry_policy = retry_policy or RetryPolicy()
        self.clock: Clock = clock or SystemClock()
        self._rng = random.Random(seed)
        self._router = Router(routes)
        timeouts = timeouts or Timeouts()
        if transport is None:
            transport = AiohttpTransport(
                session=session, timeouts=timeouts, max_connections=self.limits.max_connections
            )
        self._connection = GatewayConnection(
            transport=transport,
            api_key=api_key,
            base_url=base_url,
            clock=self.clock,
            retry=RetryDecision(
                self.retry_policy,
                self._rng,
                self.clock,
                honours_idempotency_keys=self.gateway.honours_idempotency_keys,
            ),
            request_timeout=timeouts.request,
            requests_per_second=self.limits.requests_per_second,
            max_response_bytes=self.limits.max_response_bytes,
        )
        self._slots: dict[str, asyncio.Semaphore] = {}
        # Every wait, generate and batch of this client polls through this one heap.
        self._poller = Poller(
            refresh=self._refresh, clock=self.clock, rng=self._rng, max_polls=self.limits.max_polls
        )
        self._batches: set[tuple[asyncio.Task[None], anyio.CancelScope]] = set()

    def __repr__(self) -> str:
        return f"Client(base_url={self._connection.base_url!r}, gateway={self.gateway.name!r})"

    @property
    def base_url(self) -> str:
        return self._connection.base_url

    @property
    def request_count(self) -> int:
        """HTTP requests this client has sent (retries and downloads included)."""
        return self._connection.request_count

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop running batches and the poller, and close the connection pool.

        Batches are cancelled and waited for (a create already sent is seen
        through first); a ``wait`` still running in another task raises
        :class:`~asyncvideo.errors.AsyncVideoError`.
        """
        batches = list(self._batches)
        for _, scope in batches:
            scope.cancel()  # through the batch's scope, so shielded creates finish first
        if batches:
            with anyio.CancelScope(shield=True):
                await asyncio.wait([task for task, _ in batches])
        await self._poller.aclose()
        await self._connection.aclose()

    # -- limits ---------------------------------------------------------------------------

    def _slot(self, kind: str) -> asyncio.Semaphore:
        # asyncio's semaphore, not anyio's limiter: every request takes one, and
        # anyio's adds a checkpoint (an extra loop turn) even when a slot is free,
        # which measured as a few percent of a batch's CPU. aiohttp already ties
        # the SDK to asyncio, and cancellation works the same.
        limiter = self._slots.get(kind)
        if limiter is None:
            total = {
                "create": self.limits.max_creates,
                "poll": self.limits.max_polls,
                "download": self.limits.max_downloads,
            }[kind]
            limiter = self._slots[kind] = asyncio.Semaphore(total)
        return limiter

    # -- requests -> jobs -------------------------------------------------------------------

    def provider_for(self, request: VideoRequest) -> Provider:
        """The adapter that will handle ``request`` (routing by model or ``provider=``)."""
        return self._router.provider_for(request.model, request.provider)

    def prepare(
        self, request: VideoRequest | None = None, /, **fields: Unpack[VideoRequestFields]
    ) -> VideoRequest:
        """Build and check a request without sending it; raises ``ValidationError``.

        Args:
            request: the request; or give its fields as keywords.
            fields: :class:`VideoRequest` fields (typed: ``VideoRequestFields``); with
                ``request``, they replace its values.

        Example:
            >>> client.prepare(prompt="a cat", model="kling-v1", seconds=5)  # doctest: +SKIP
        """
        if request is None:
            request = VideoRequest.from_fields(fields)
        elif fields:
            request = attrs.evolve(request, **fields)
        self.provider_for(request).check(request)
        return request

    async def submit(
        self, request: VideoRequest | None = None, /, **fields: Unpack[VideoRequestFields]
    ) -> Job:
        """Create one task on the gateway and return its first :class:`Job` snapshot.

        Everything is checked before anything is sent: a request the model
        cannot take raises :class:`~asyncvideo.errors.ValidationError` and the
        gateway sees nothing. The create carries an ``Idempotency-Key``
        (``request.idempotency_key``, or a fresh one) and is retried only where
        the gateway provably did not act on it.

        Args:
            request: the request; or give its fields as keywords.
            fields: :class:`VideoRequest` fields (typed: ``VideoRequestFields``, so a
                misspelt name or a wrong type fails type checking).

        Raises:
            ValidationError: bad input (nothing was sent).
            CreateOutcomeUnknown: the create may have made a task; carries the key.
            APIError: the gateway refused it.

        Example:
            >>> job = await client.submit(prompt="a cat", model="sora-2")  # doctest: +SKIP
        """
        request = self.prepare(request, **fields)
        provider = self.provider_for(request)
        images = {
            name: await load_image(name, value, wire=provider.wire)
            for name in ("image", "last_frame")
            if (value := getattr(request, name)) is not None
        }
        body = provider.build(request, images)
        key = request.idempotency_key or uuid.uuid4().hex
        endpoints = self.gateway.endpoints(provider.wire)
        async with self._slot("create"):
            payload = await self._connection.request_json(
                "POST",
                endpoints.create,
                provider=provider.name,
                kind="create",
                json=body.json,
                form=body.form,
                files=_file_parts(body),
                headers={"Idempotency-Key": key},
                idempotency_key=key,
            )
        try:
            job = provider.parse(payload, model=request.model)
        except ProtocolError as exc:
            # The gateway said yes but named no task we can read: it may bill for one.
            raise CreateOutcomeUnknown.after(exc, idempotency_key=key) from exc
        logger.info(
            "submitted %s task %s (key %s)", request.model, printable(job.id), printable(key)
        )
        return job

    def _status_path(self, job: Job) -> str:
        if job.id in DOT_SEGMENTS:
            # A URL library resolves a "." or ".." segment (percent-encoded or not)
            # into another path: GET /v1/videos/.. would ask for /v1/.
            raise ValidationError(f"task id {job.id!r} cannot name a task", field="task_id")
        provider = PROVIDERS[job.provider]
        template = self.gateway.endpoints(provider.wire).status
        return template.replace("{id}", quote(job.id, safe=""))

    async def refresh(self, job: Job) -> Job:
        """Query the task once and return a new snapshot.

        The state never moves backwards and progress never drops, whatever the
        gateway says on this poll.
        """
        return await self._refresh(job, None)

    async def _refresh(self, job: Job, deadline: float | None) -> Job:
        # The poller's query: its retries end by ``deadline`` (the wait's, on self.clock).
        provider = PROVIDERS[job.provider]
        async with self._slot("poll"):
            payload = await self._connection.request_json(
                "GET",
                self._status_path(job),
                provider=provider.name,
                kind="status",
                task_id=job.id,
                deadline=deadline,
            )
        return provider.parse(payload, model=job.model, task_id=job.id, previous=job)

    async def get(
        self, task_id: str, *, model: str | None = None, provider: str | None = None
    ) -> Job:
        """Re-attach to an existing task (after a restart, or from a webhook).

        Args:
            task_id: a ``job.ref``, or the id the gateway gave at submit.
            model: the model it was submitted with (it decides the endpoint);
                not needed, and not allowed, with a ``job.ref``.
            provider: force a provider instead of routing by model.

        Example:
            >>> job = await client.get(job.ref)  # doctest: +SKIP
            >>> job = await client.get("task_123", model="kling-v1")  # doctest: +SKIP
        """
        if not task_id:
            raise ValidationError("task_id must be non-empty", field="task_id")
        if looks_like_ref(task_id):
            if model is not None or provider is not None:
                raise ValidationError(
                    "a job.ref already names the model and provider: pass it alone",
                    field="model" if model is not None else "provider",
                )
            ref = read_ref(task_id)
            adapter = PROVIDERS.get(ref.provider)
            if adapter is None or adapter.wire != ref.wire:
                raise ValidationError(
                    "job reference names a provider this SDK does not know", field="ref"
                )
            task_id, model = ref.task_id, ref.model
        elif model is None:
            raise ValidationError(
                "pass model= with a task id (or pass the job's ref instead)", field="model"
            )
        else:
            adapter = self._router.provider_for(model, provider)
        placeholder = Job(id=task_id, model=model, provider=adapter.name, state=JobState.QUEUED)
        async with self._slot("poll"):
            payload = await self._connection.request_json(
                "GET",
                self._status_path(placeholder),
                provider=adapter.name,
                kind="status",
                task_id=task_id,
            )
        return adapter.parse(payload, model=model, task_id=task_id)

    async def wait(
        self,
        job: Job,
        *,
        timeout: float | None = None,
        poll_policy: PollPolicy | None = None,
    ) -> Job:
        """Poll until the job is terminal and return it (succeeded, failed or cancelled).

        Transient errors while polling (timeouts, 5xx, 429) are retried at the
        next scheduled poll; the deadline decides. The wait is one entry in the
        client's poller, so a thousand concurrent waits cost one sleeping task.

        Args:
            job: a snapshot from ``submit``, ``get`` or ``refresh``.
            timeout: seconds to wait (default: the poll policy's deadline).
            poll_policy: overrides the client's schedule for this wait.

        Raises:
            JobTimeoutError: still not terminal at the deadline (carries the job).
            APIError: a final error such as 401 or 404.
        """
        policy = poll_policy or self.poll_policy
        deadline = policy.deadline if timeout is None else timeout
        if job.is_terminal:
            return job
        done: asyncio.Future[Job] = asyncio.get_running_loop().create_future()

        def listener(update: PollUpdate) -> None:
            if not update.final or done.done():
                return
            if update.error is not None:
                done.set_exception(update.error)
            else:
                done.set_result(update.job)

        # No loop of our own: the client's poller holds this wait as one heap entry.
        watch = self._poller.watch(job, policy=policy, deadline=deadline, listener=listener)
        try:
            return await done
        finally:
            watch.cancel()  # cancelled: the others go on polling undisturbed
            if done.done() and not done.cancelled():
                done.exception()  # seen, even when a cancel arrived with the answer

    async def download(
        self, job: Job, dest: str | os.PathLike[str], *, variant: str | None = None
    ) -> Path:
        """Stream a succeeded job's video to ``dest`` (a file, or a folder for ``<id>.mp4``).

        ``dest`` is a folder when it is one already or when it ends with a path
        separator (``"clips/"``, created if missing); anything else is the file.

        The bytes go to ``<dest>.part`` first and are renamed into place only
        after the length and MP4 header are checked; a dropped connection
        resumes. The API key is sent only to the gateway's origin, never to a
        CDN URL.

        Raises:
            JobFailedError: the job failed or was cancelled.
            VideoExpiredError: the job's ``expires_at`` has passed (nothing is sent).
            DownloadError: the body could not be fetched or did not verify.
        """
        target = Path(dest)
        # On the text, not the Path: Path("new/") drops the separator that says "a folder".
        if await anyio.to_thread.run_sync(names_folder, dest):
            target = target / f"{safe_filename(job.id)}.mp4"
        await self._download_file(job, target, variant=variant)
        return target

    async def _download_file(self, job: Job, path: Path, *, variant: str | None = None) -> int:
        """Like :meth:`download` with ``path`` always a file; returns the bytes written.

        A batch uses this: it names its files itself and wants the size
        without another trip to the disk.
        """
        provider = PROVIDERS[job.provider]
        async with self._slot("download"):
            return await download_job(
                self._connection,
                job,
                path,
                content_path=self.gateway.endpoints(provider.wire).content,
                clock=self.clock,
                variant=variant,
            )

    async def generate(
        self,
        request: VideoRequest | None = None,
        /,
        *,
        output: str | os.PathLike[str],
        timeout: float | None = None,
        **fields: Unpack[VideoRequestFields],
    ) -> Path:
        """Submit, wait and download in one call; returns the file's path.

        Args:
            request: the request; or give its fields as keywords.
            output: where to save the video: a file, or a folder (one that exists, or
                a path ending with a separator) for ``<task id>.mp4``.
            timeout: seconds to wait for the job (default: the poll policy's deadline).
            fields: :class:`VideoRequest` fields (typed: ``VideoRequestFields``).

        Raises:
            OutputError: ``output``'s folder cannot take the video (checked before
                the create, see :func:`~asyncvideo.check_output`).
            JobFailedError: the job failed (the error carries the job).
            JobTimeoutError: the deadline passed (the error carries the job).

        Example:
            >>> path = await client.generate(  # doctest: +SKIP
            ...     prompt="waves at dusk", model="viduq1", output="waves.mp4"
            ... )
        """
        # Before the create: a clip that cannot be kept must not be paid for.
        await check_output(output)
        job = await self.submit(request, **fields)
        job = await self.wait(job, timeout=timeout)
        if job.state is not JobState.SUCCEEDED:
            raise JobFailedError(job)
        return await self.download(job, output)

    def generate_many(
        self,
        requests: Iterable[VideoRequest] | AsyncIterable[VideoRequest],
        *,
        output_dir: str | os.PathLike[str],
        on_event: EventHandler | None = None,
        timeout: float | None = None,
        poll_policy: PollPolicy | None = None,
        journal: str | os.PathLike[str] | None = None,
        store: JobStore | None = None,
    ) -> Batch:
        """Generate many clips at once; yields one :class:`Outcome` per request as each ends.

        Requests are read lazily (a huge prompt file is never all in memory),
        at most ``limits.max_active_jobs`` are in flight, the client's one
        poller polls them all, and finished videos download in parallel while
        others are still generating. One job's failure never stops the others;
        an error that would fail them all (one whose class says ``stops_batch``:
        401, 402, 403) stops the batch and is raised.

        Nothing is paid for before it can be kept: ``output_dir`` is created if
        missing and checked (a writable folder with room for one clip) before
        the first create, or :class:`~asyncvideo.errors.OutputError` is raised.
        A gateway that cannot be reached stops the batch with one
        :class:`~asyncvideo.errors.ConnectError` after
        ``MAX_CONNECT_FAILURES`` (5) creates in a row fail to connect, its
        notes naming the tasks already created. A journal (store) that fails
        stops the creating: the tasks already paid for are still seen through
        and delivered, then the batch raises an ``OutputError`` naming the
        tasks the journal may not hold.

        The result is a :class:`~asyncvideo.Batch`: iterate it, ideally inside
        ``async with``, which cancels what is left on leaving (see ``Batch``).
        Nothing is sent before the first outcome is asked for.

        Args:
            requests: any iterable or async iterable of :class:`VideoRequest`.
            output_dir: where videos are saved, as ``<index>_<task id>.mp4``.
            on_event: called with each :data:`~asyncvideo.Event`.
            timeout: per-job deadline (default: the poll policy's).
            poll_policy: overrides the client's schedule for this batch.
            journal: a SQLite file recording every request's idempotency key
                and task id before and as they happen; running the same batch
                again with it resumes: finished files are skipped, known tasks
                are polled, and only never-sent requests are created.
            store: the same through any :class:`~asyncvideo.JobStore` (for
                example an open :class:`~asyncvideo.SQLiteJournal`), which
                stays yours to close; give ``journal`` or ``store``, not both.

        Raises:
            ValidationError: both ``journal`` and ``store`` were given.

        Example:
            >>> async with client.generate_many(  # doctest: +SKIP
            ...     requests, output_dir="videos", journal="videos/journal.sqlite"
            ... ) as outcomes:
            ...     async for outcome in outcomes:
            ...         print(outcome.index, outcome.path or outcome.error)
        """
        run = _Run(
            ClientBackend(self),
            requests,
            output_dir=Path(output_dir),
            on_event=on_event,
            timeout=timeout,
            poll_policy=poll_policy or self.poll_policy,
            journal=journal,
            store=store,
        )
        return Batch(run)

    def _track_batch(self, task: asyncio.Task[None], scope: anyio.CancelScope) -> None:
        """Remember a running batch so :meth:`aclose` can stop it first."""
        entry = (task, scope)
        self._batches.add(entry)
        task.add_done_callback(lambda _: self._batches.discard(entry))


Client.__module__ = "asyncvideo"
