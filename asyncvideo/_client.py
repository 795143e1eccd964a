"""The public entry point: :class:`Client`."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import random
import uuid
import weakref
from collections.abc import AsyncIterable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Unpack

import anyio
import attrs

from ._batch import Batch
from ._batch_run import _Run
from ._callbacks import CallbackTasks, callback_url_with_token, check_secret, check_webhook_url
from ._client_backend import ClientBackend
from ._clock import Clock, SystemClock
from ._destination import check_output, names_folder
from ._download import VideoStream, download_job, safe_filename
from ._events import (
    DownloadedEvent,
    EventHandler,
    FailedEvent,
    SubmittedEvent,
    change_event,
    emit_event,
)
from ._images import load_image
from ._jobref import looks_like_ref, read_ref
from ._logconfig import configure_from_env
from ._logtext import printable
from ._models import Job, Limits, VideoRequest, VideoRequestFields
from ._poller import Poller, PollListener, PollUpdate, Watch, running_loop
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
    JobTimeoutError,
    ProtocolError,
    ValidationError,
)
from .providers import PROVIDERS, CreateBody, Provider, Router
from .providers._parse import id_segment

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

    Logging: the ``asyncvideo`` logger says what the client does (INFO: tasks
    created; DEBUG: each poll's finding, retries). Set ``ASYNCVIDEO_LOG=debug``
    (or ``info``, ``warning``, ``error``) to see it on stderr without any setup;
    it is read when a client is created, and logging you configured in code wins.

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
        webhook_url: where gateways should call back when a task ends. Every
            create to a provider that takes a callback URL carries it (an
            explicit ``VideoRequest.callback_url`` wins), with the create's
            idempotency key as our reference of the job; such jobs are polled
            only every ``PollPolicy.callback_interval``, and your webhook
            handler calls :meth:`notify` to have them looked at at once.
        webhook_secret: the secret callbacks are signed with (for
            :mod:`asyncvideo.webhooks`); as sensitive as the key, never shown.

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
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        configure_from_env()  # ASYNCVIDEO_LOG, read here: after the app set up its logging
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
        self.webhook_url = None if webhook_url is None else check_webhook_url(webhook_url)
        self._webhook_secret = None if webhook_secret is None else check_secret(webhook_secret)
        #: tasks created with webhook_url, by our reference (the idempotency key)
        self._callback_tasks = CallbackTasks()
        #: the pollers of this client and of those made by with_options: a callback
        #: received by any of them wakes a job whichever one waits for it
        self._pollers: weakref.WeakSet[Poller] = weakref.WeakSet()
        self.gateway = resolve_gateway(gateway)
        self.limits = limits or Limits()
        self.poll_policy = poll_policy or PollPolicy()
        self.retry_policy = retry_policy or RetryPolicy()
        self.clock: Clock = clock or SystemClock()
        self._rng = random.Random(seed)
        self._router = Router(routes)
        self.timeouts = timeouts = timeouts or Timeouts()
        if transport is None:
            transport = AiohttpTransport(
                session=session, timeouts=timeouts, max_connections=self.limits.max_connections
            )
        self._connection = GatewayConnection(
            transport=transport,
            api_key=api_key,
            base_url=base_url,
            clock=self.clock,
            retry=self._retry_decision(),
            request_timeout=timeouts.request,
            requests_per_second=self.limits.requests_per_second,
            max_response_bytes=self.limits.max_response_bytes,
            other_secrets=(webhook_secret,) if webhook_secret else (),
        )
        self._start_own_state()

    def _retry_decision(self) -> RetryDecision:
        return RetryDecision(
            self.retry_policy,
            self._rng,
            self.clock,
            honours_idempotency_keys=self.gateway.honours_idempotency_keys,
        )

    def _start_own_state(self) -> None:
        """What each client has for itself, never shared with one made by :meth:`with_options`."""
        self._slots: dict[str, asyncio.Semaphore] = {}
        # Every wait, generate and batch of this client polls through this one heap.
        self._poller = Poller(
            refresh=self._refresh, clock=self.clock, rng=self._rng, max_polls=self.limits.max_polls
        )
        self._pollers.add(self._poller)
        self._batches: set[tuple[asyncio.Task[None], anyio.CancelScope]] = set()

    def with_options(
        self,
        *,
        limits: Limits | None = None,
        poll_policy: PollPolicy | None = None,
        retry_policy: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> Client:
        """A client with other options that shares this one's connection pool.

        Cheap (no new session or connector), for a call site that needs another
        deadline, schedule or bound: ``client.with_options(timeouts=...)``.
        An option not given is this client's.

        Shared with this client (they protect the same gateway): the connection
        pool (``transport``/``session``), the adaptive per-provider rates that
        429s and ``Retry-After`` set, the ``requests_per_second`` cap, the key,
        gateway, routes and clock. The derived client's own: poll policy, retry
        policy, timeouts, the create/poll/download/active-job bounds of
        ``limits`` (its own semaphores), its poller, its batches and its
        ``request_count``. ``limits.max_connections`` and
        ``limits.requests_per_second`` belong to the shared pool and cannot
        differ (derive with ``attrs.evolve(client.limits, ...)``). With a
        ``transport=`` of your own, only ``timeouts.request`` can change (it
        travels on each request); connect and read timeouts are the transport's.

        Closing the derived client stops its batches and waits and leaves the
        pool open; closing this client closes the pool, after which the derived
        client's requests raise :class:`~asyncvideo.errors.ConfigurationError`.

        Args:
            limits: concurrency bounds (see above for the two shared fields).
            poll_policy: when to poll.
            retry_policy: how transient failures are retried.
            timeouts: network timeouts.

        Raises:
            ConfigurationError: this client is closed, or ``limits`` changes a
                shared field.

        Example:
            >>> quick = client.with_options(timeouts=Timeouts(request=10))  # doctest: +SKIP
            >>> job = await quick.wait(job, timeout=30)  # doctest: +SKIP
        """
        limits = limits or self.limits
        for name in ("max_connections", "requests_per_second"):
            if getattr(limits, name) != getattr(self.limits, name):
                raise ConfigurationError(
                    f"limits.{name} belongs to the connection pool a derived client shares "
                    f"({getattr(self.limits, name)!r}); derive with "
                    f"attrs.evolve(client.limits, ...) to keep it",
                    field=name,
                )
        timeouts = timeouts or self.timeouts
        transport = self._connection.transport
        if isinstance(transport, AiohttpTransport) and timeouts != self.timeouts:
            transport = transport.with_timeouts(timeouts)
        # A shallow copy keeps what is shared (gateway, routes, clock, the pool);
        # what is the derived client's own is made anew below.
        derived = copy.copy(self)
        derived.limits = limits
        derived.poll_policy = poll_policy or self.poll_policy
        derived.retry_policy = retry_policy or self.retry_policy
        derived.timeouts = timeouts
        derived._rng = random.Random(self._rng.getrandbits(64))
        derived._connection = self._connection.derive(
            transport=transport,
            retry=derived._retry_decision(),
            request_timeout=timeouts.request,
            max_response_bytes=limits.max_response_bytes,
        )
        derived._start_own_state()
        return derived

    def __repr__(self) -> str:
        return f"Client(base_url={self._connection.base_url!r}, gateway={self.gateway.name!r})"

    @property
    def base_url(self) -> str:
        return self._connection.base_url

    @property
    def webhook_secret(self) -> str | None:
        """The secret callbacks are signed with (read by :mod:`asyncvideo.webhooks`)."""
        return self._webhook_secret

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
        the gateway provably did not act on it. On a client with ``webhook_url``,
        a create to a provider that takes callbacks (Vidu, Kling) carries that
        URL and the key as our reference of the job (see :meth:`notify`).

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
        calls_back = self._calls_back(request, provider)
        if calls_back:
            assert self.webhook_url is not None
            url = callback_url_with_token(self.webhook_url, key)
            body = provider.with_callback(body, url, key)
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
        if calls_back:
            self._callback_tasks.add(key, job.provider, job.id)
        logger.info(
            "submitted %s task %s (key %s)", request.model, printable(job.id), printable(key)
        )
        return job

    def _calls_back(self, request: VideoRequest, provider: Provider) -> bool:
        """Whether this client's create of ``request`` carries our callback URL."""
        return (
            self.webhook_url is not None
            and request.callback_url is None
            and provider.takes_callbacks
        )

    def _reattached(self, request: VideoRequest, key: str, job: Job) -> None:
        """A task a previous run created with ``key``: expect its callback as ``submit`` does.

        A resumed batch re-attaches by task id; without this its jobs would be
        polled on the normal schedule and their callbacks matched only by the
        id the body names. An ended job is not remembered (no wait forgets it).
        """
        if not job.is_terminal and self._calls_back(request, self.provider_for(request)):
            self._callback_tasks.add(key, job.provider, job.id)

    def _status_path(self, job: Job) -> str:
        segment = id_segment(job.id)
        if segment is None:
            # A URL library resolves a "." or ".." segment (percent-encoded or not)
            # into another path: GET /v1/videos/.. would ask for /v1/.
            raise ValidationError(f"task id {job.id!r} cannot name a task", field="task_id")
        provider = PROVIDERS[job.provider]
        template = self.gateway.endpoints(provider.wire).status
        return template.replace("{id}", segment)

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
        on_event: EventHandler | None = None,
    ) -> Job:
        """Poll until the job is terminal and return it (succeeded, failed or cancelled).

        Transient errors while polling (timeouts, 5xx, 429) are retried at the
        next scheduled poll; the deadline decides. The wait is one entry in the
        client's poller, so a thousand concurrent waits cost one sleeping task.

        Args:
            job: a snapshot from ``submit``, ``get`` or ``refresh``.
            timeout: seconds to wait (default: the poll policy's deadline).
            poll_policy: overrides the client's schedule for this wait.
            on_event: called (sync or async, on this call's task, in order) with a
                :class:`StateChangedEvent` or :class:`ProgressEvent` (``index=0``)
                for each change a poll finds, the terminal state included. The
                end is what ``wait`` returns or raises (``generate`` also emits
                submitted, downloaded and failed). A handler that raises is
                logged and the wait goes on.

        Raises:
            JobTimeoutError: still not terminal at the deadline (carries the job).
            APIError: a final error such as 401 or 404.
        """
        policy = poll_policy or self.poll_policy
        deadline = policy.deadline if timeout is None else timeout
        if job.is_terminal:
            return job
        # The poller's listener must not block: it queues, and this task runs the handler.
        updates: asyncio.Queue[PollUpdate] = asyncio.Queue()
        # No loop of our own: the client's poller holds this wait as one heap entry.
        watch = self._watch(job, policy=policy, deadline=deadline, listener=updates.put_nowait)
        try:
            while True:
                update = await updates.get()
                await emit_event(on_event, change_event(0, update.job, update.previous))
                if update.final:
                    break
        finally:
            watch.cancel()  # cancelled: the others go on polling undisturbed
        if update.error is not None:
            raise update.error
        return update.job

    def _watch(
        self, job: Job, *, policy: PollPolicy, deadline: float, listener: PollListener
    ) -> Watch:
        """Register ``job`` with the poller; a job made with our callback URL polls slowly."""
        callbacks = self._callback_tasks
        if not callbacks.expects_callback(job.provider, job.id):
            return self._poller.watch(job, policy=policy, deadline=deadline, listener=listener)

        def forget_when_ended(update: PollUpdate) -> None:
            if update.job.is_terminal:
                callbacks.forget(job.provider, job.id)
            listener(update)

        watch = self._poller.watch(
            job, policy=policy, deadline=deadline, listener=forget_when_ended, callback=True
        )
        if callbacks.take_early(job.provider, job.id):
            # It called back between its create and this wait (an on_event handler or a
            # journal write ran in between): poll now, not after the safety interval.
            self._poller.wake(job.provider, job.id)
        return watch

    def notify(self, job: Job, *, token: str | None = None) -> bool:
        """Have a watched job polled at once: a verified callback says it changed.

        Call it from your webhook handler (:mod:`asyncvideo.webhooks` does)
        with the callback's snapshot and our reference from the callback URL.
        The snapshot itself is not believed: the poll this triggers is the
        one status query that decides, before anything is downloaded. A
        notification for a job whose poll is already due or in flight, or
        whose wait has ended, sends nothing, so duplicate callbacks cost one
        status request and never a second download. A callback for a task of
        this client that nobody waits for yet (it came before the create's
        answer, or before the wait) is remembered: the wait that starts later
        polls at once.
        Call it on the client's event loop (an aiohttp or ASGI handler runs
        there) or from another thread (a sync framework's handler): the whole
        notification is then handed to the client's loop.

        Args:
            job: the callback's snapshot (its ``provider`` and ``id`` are used).
            token: our reference of the job (the ``asyncvideo_token`` query
                parameter of the callback URL). It decides which job is woken:
                a provider behind a relay names its own task id, not the
                relay's. A callback whose body names another of our tasks than
                its token does is refused.

        Returns:
            True if a ``wait``, ``generate`` or batch of this client (or of a
            client made from it by :meth:`with_options`) is watching the job
            (it is polled now); False otherwise. From another thread: True once
            the notification is handed to the client's loop (False if that loop
            is closed).

        Example:
            >>> client.notify(job, token=request.query.get("asyncvideo_token"))  # doctest: +SKIP
            True
        """
        loop = next((p.loop for p in list(self._pollers) if p.loop is not None), None)
        if loop is not None and running_loop() is not loop:
            # A sync framework's worker thread: the whole notification runs on the
            # client's loop, so a wait starting meanwhile sees either the wake or the
            # "called back early" note, never neither.
            try:
                loop.call_soon_threadsafe(self._notify_here, job, token)
            except RuntimeError:  # the loop is closed: nothing polls any more
                return False
            return True
        return self._notify_here(job, token)

    def _notify_here(self, job: Job, token: str | None) -> bool:
        target = (job.provider, job.id)
        tasks = self._callback_tasks
        if token is not None:
            named = tasks.task_for(token)
            # Refused only when the body names another task of ours: behind a relay,
            # Vidu and Kling call back with their own task id, which only our token maps.
            if (
                named is not None
                and named != (job.provider, job.id)
                and tasks.expects_callback(job.provider, job.id)
            ):
                logger.warning(
                    "callback for %s task %s carries the reference of task %s: ignored",
                    job.provider,
                    printable(job.id),
                    printable(named[1]),
                )
                return False
            target = named or target
        woken = False
        for poller in list(self._pollers):  # every one: the same job may wait in several
            woken = poller.wake(*target) or woken
        if not woken:
            tasks.called_back_early(*target, token)  # a wait that starts later polls at once
        return woken

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
        async with self._slot("download"):
            return await download_job(
                self._connection,
                job,
                path,
                content_path=self._content_path(job),
                clock=self.clock,
                variant=variant,
            )

    def open_video(self, job: Job, *, variant: str | None = None) -> VideoStream:
        """A succeeded job's video as a stream of ``bytes`` chunks, for ``async with``.

        For a web handler that passes the clip on without a temporary file. The
        bytes come the way :meth:`download` fetches them (the key only to the
        gateway's origin, CDN fallback, resumed drops, checked to be an MP4),
        within the download slots of ``Limits.max_downloads``.

        Args:
            job: a succeeded job.
            variant: asked of the content endpoint, as in :meth:`download`.

        Returns:
            A :class:`~asyncvideo.VideoStream`; entering it raises what
            :meth:`download` would, before a byte is yielded.

        Example:
            >>> async def clip(client: Client, job: Job) -> None:  # doctest: +SKIP
            ...     async with client.open_video(job) as stream:
            ...         print(stream.content_type, stream.content_length)
            ...         async for chunk in stream:
            ...             await send(chunk)
        """
        return VideoStream(
            job,
            connection=self._connection,
            content_path=self._content_path(job),
            clock=self.clock,
            slot=self._slot("download"),
            variant=variant,
        )

    def _content_path(self, job: Job) -> str | None:
        return self.gateway.endpoints(PROVIDERS[job.provider].wire).content

    async def generate(
        self,
        request: VideoRequest | None = None,
        /,
        *,
        output: str | os.PathLike[str],
        timeout: float | None = None,
        on_event: EventHandler | None = None,
        **fields: Unpack[VideoRequestFields],
    ) -> Path:
        """Submit, wait and download in one call; returns the file's path.

        Args:
            request: the request; or give its fields as keywords.
            output: where to save the video: a file, or a folder (one that exists, or
                a path ending with a separator) for ``<task id>.mp4``.
            timeout: seconds to wait for the job (default: the poll policy's deadline).
            on_event: called (sync or async, in order) with the job's events, as a
                batch's with ``index=0``: :class:`SubmittedEvent`, then
                :class:`StateChangedEvent` / :class:`ProgressEvent`, then
                :class:`DownloadedEvent` or :class:`FailedEvent` (which comes
                just before ``generate`` raises). A request that fails its checks
                raises before any event; a handler that raises is logged and the
                job goes on.
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
        request = self.prepare(request, **fields)
        job: Job | None = None
        try:
            job = await self.submit(request)
            await emit_event(on_event, SubmittedEvent(index=0, job=job))
            job = await self.wait(job, timeout=timeout, on_event=on_event)
            if job.state is not JobState.SUCCEEDED:
                raise JobFailedError(job)
            path = await self.download(job, output)
        except Exception as exc:
            if on_event is not None:
                last = exc.job if isinstance(exc, JobFailedError | JobTimeoutError) else job
                failed = FailedEvent(index=0, request=request, job=last, error=exc)
                await emit_event(on_event, failed)
            raise
        if on_event is not None:
            size = (await anyio.Path(path).stat()).st_size
            await emit_event(on_event, DownloadedEvent(index=0, job=job, path=path, size=size))
        return path

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
