"""One gateway, above the seam: base URL, auth, rate limits, redirects and retries.

Everything here speaks :class:`~asyncvideo.AsyncTransport`, so it works the
same over any HTTP stack. Two rules live here because they must hold whatever
the transport: the API key goes only to the gateway's own origin (redirects
are walked by hand and the key is dropped when they leave it), and every
retry is asked of the one :class:`~asyncvideo._retry.RetryDecision`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import urljoin, urlsplit

import anyio
import attrs

from .._clock import Clock, ManualClock
from .._logtext import printable
from .._models import DEFAULT_MAX_RESPONSE_BYTES
from .._ratelimit import AdaptiveRateLimiter
from .._retry import RequestKind, RetryDecision
from ..errors import (
    APIError,
    AsyncVideoError,
    ConfigurationError,
    ProtocolError,
    RateLimitError,
    TransportError,
)
from ..providers._parse import api_error, parse_json_object, task_id_in
from ._base import AsyncTransport, FilePart, HTTPRequest, HTTPResponse

__all__ = ["GatewayConnection", "Scrubber", "origin_of"]

logger = logging.getLogger("asyncvideo")

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
# An error page is read only this far: enough for any message, bounded for a hostile one.
_ERROR_BODY_LIMIT = 64 * 1024
# An attempt at a wait's deadline still gets this long (the poller's last look).
_MIN_ATTEMPT_TIME = 0.05


def _too_big(method: str, path: str, limit: int, status: int) -> ProtocolError:
    return ProtocolError(
        f"the answer to {method} {path} is larger than {limit} bytes "
        "(Limits.max_response_bytes); not read",
        status=status,
    )


_REDACTED = "[redacted]"


class Scrubber:
    """Takes the API key (and any other secret given) out of text from the gateway or transport.

    A gateway may echo the key (in an error message, a failure reason); every
    body the SDK reads as text passes through here first, so the key never
    reaches an exception, a log line or ``Job.raw``. The client's webhook
    secret is scrubbed the same way.
    """

    __slots__ = ("_secrets",)

    def __init__(self, secret: str, *more: str) -> None:
        # The longest first: a secret inside another must not leave part of that one behind.
        given = sorted({s for s in (secret, *more) if s}, key=len, reverse=True)
        self._secrets = tuple((s, s.encode()) for s in given)

    def text(self, value: str) -> str:
        for secret, _ in self._secrets:
            value = value.replace(secret, _REDACTED)
        return value

    def body(self, value: bytes) -> bytes:
        for _, secret in self._secrets:
            if secret in value:
                value = value.replace(secret, _REDACTED.encode())
        return value


def _foreign(exc: Exception, url: str, task_id: str | None, scrub: Scrubber) -> TransportError:
    # Whatever a transport raises is a transport failure: for a create, one whose
    # outcome is unknown (the key is kept), never an error the caller cannot type.
    # The caller raises it outside its ``except``: the transport's own exception
    # (which may hold request headers) does not travel with it.
    host = urlsplit(url).netloc
    return TransportError(
        scrub.text(f"{type(exc).__name__} from the transport ({host}): {exc}"), task_id=task_id
    )


class _Guarded:
    """A response whose body reads raise only SDK errors, and never hold the key."""

    __slots__ = ("_response", "_scrub", "_task_id", "_url")

    def __init__(
        self, response: HTTPResponse, url: str, task_id: str | None, scrub: Scrubber
    ) -> None:
        self._response = response
        self._url = url
        self._task_id = task_id
        self._scrub = scrub

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        # Video bytes pass untouched: they are never shown as text.
        error: TransportError | None = None
        try:
            async for chunk in self._response.iter_bytes():
                yield chunk
        except AsyncVideoError:
            raise
        except Exception as exc:
            error = _foreign(exc, self._url, self._task_id, self._scrub)
        if error is not None:
            raise error

    async def read(self, limit: int | None = None) -> bytes:
        """The body, with the API key taken out wherever the gateway echoed it."""
        try:
            return self._scrub.body(await self._response.read(limit))
        except AsyncVideoError:
            raise
        except Exception as exc:
            error = _foreign(exc, self._url, self._task_id, self._scrub)
        raise error

    async def aclose(self) -> None:
        try:
            await self._response.aclose()
        except Exception as exc:  # releasing a connection must not hide the answer
            logger.debug("closing a response failed: %s", printable(exc))


async def _finish_within(task: asyncio.Future[dict[str, object]], timeout: float) -> None:
    """Wait for ``task`` up to ``timeout`` seconds, through repeated cancellations."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done() and (left := deadline - loop.time()) > 0:
        # The caller's CancelledError is raised again once this returns.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([task], timeout=left)
    if not task.done():
        task.cancel()  # past Timeouts.request: the transport should have given up already


def _log_abandoned_create(
    task: asyncio.Future[dict[str, object]], idempotency_key: str | None
) -> None:
    if not task.done() or task.cancelled():
        logger.warning(
            "a create was cancelled with no answer in time; it may have made a task "
            "(idempotency key %s)",
            idempotency_key,
        )
    elif (error := task.exception()) is not None:
        logger.warning(
            "a create was cancelled and then failed (%s: %s); it may have made a task "
            "(idempotency key %s)",
            type(error).__name__,
            error,
            idempotency_key,
        )
    else:
        logger.warning(
            "a create was cancelled after it was sent; the gateway made task %s "
            "(idempotency key %s)",
            task_id_in(task.result()),
            idempotency_key,
        )


def origin_of(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` with default ports filled in, for same-origin checks."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


class _Pool:
    """What a client shares with the clients derived from it (``Client.with_options``).

    Everything that protects the one gateway: the transport (its connection
    pool), the adaptive per-provider rates that 429s and ``Retry-After`` set,
    and the ``requests_per_second`` cap. The root client owns it and closes it.
    """

    __slots__ = ("closed", "global_rate", "provider_rates", "transport")

    def __init__(self, transport: AsyncTransport, global_rate: AdaptiveRateLimiter) -> None:
        self.transport = transport
        self.global_rate = global_rate
        self.provider_rates: dict[str, AdaptiveRateLimiter] = {}
        self.closed = False


class GatewayConnection:
    """Sends requests to one gateway and turns answers into JSON or typed errors.

    Args:
        transport: the seam requests go through.
        api_key: sent as a Bearer token, to the gateway's origin only.
        base_url: the gateway; paths are taken relative to it.
        clock: for rate limits and retry waits.
        retry: the one retry decision.
        request_timeout: seconds for one JSON request and its answer.
        requests_per_second: a client-wide cap (None: only the adaptive limits).
        max_response_bytes: the largest JSON or error answer read
            (``Limits.max_response_bytes``).
    """

    def __init__(
        self,
        *,
        transport: AsyncTransport,
        api_key: str,
        base_url: str,
        clock: Clock,
        retry: RetryDecision,
        request_timeout: float,
        requests_per_second: float | None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        other_secrets: tuple[str, ...] = (),
    ) -> None:
        self._api_key = api_key
        # other_secrets: the webhook secret, scrubbed like the key
        self._scrub = Scrubber(api_key, *other_secrets)
        self.base_url = base_url.rstrip("/") + "/"
        self._origin = origin_of(self.base_url)
        self._clock = clock
        self.retry = retry
        self._request_timeout = request_timeout
        self._max_response_bytes = max_response_bytes
        # The client-wide cap; per-provider adaptive limiters sit in front of it.
        self._pool = _Pool(transport, AdaptiveRateLimiter(clock, ceiling=requests_per_second))
        self._transport = transport  # this client's (re-timed) view of the pool's transport
        self._owns_pool = True
        self._closed = False
        self.request_count = 0

    def __repr__(self) -> str:
        return f"<GatewayConnection {self.base_url}>"

    def derive(
        self,
        *,
        transport: AsyncTransport,
        retry: RetryDecision,
        request_timeout: float,
        max_response_bytes: int,
    ) -> GatewayConnection:
        """A connection for a derived client: the same pool and rates, its own retries.

        Args:
            transport: the pool's transport, or a view of it with other timeouts.
            retry: the derived client's retry decision.
            request_timeout: seconds for one JSON request and its answer.
            max_response_bytes: the largest JSON or error answer read.

        Raises:
            ConfigurationError: this connection (or its pool) is closed.
        """
        self.check_open()
        derived = copy.copy(self)
        derived._transport = transport
        derived.retry = retry
        derived._request_timeout = request_timeout
        derived._max_response_bytes = max_response_bytes
        derived._owns_pool = False
        derived.request_count = 0
        return derived

    @property
    def transport(self) -> AsyncTransport:
        """The transport this connection sends through."""
        return self._transport

    def check_open(self) -> None:
        """Raise :class:`ConfigurationError` once this connection or its pool is closed."""
        if self._closed:
            raise ConfigurationError("this client is closed; create a new Client")
        if self._pool.closed:
            raise ConfigurationError(
                "the client this one was derived from (with_options) is closed, "
                "and with it the connection pool they shared"
            )

    async def aclose(self) -> None:
        """Close this connection; the pool closes only with the client that made it."""
        self._closed = True
        if self._owns_pool and not self._pool.closed:
            self._pool.closed = True
            await self._pool.transport.aclose()

    def rate_limiter(self, provider: str) -> AdaptiveRateLimiter:
        """The adaptive rate every request for ``provider``'s jobs shares (derived clients too)."""
        rates = self._pool.provider_rates
        limiter = rates.get(provider)
        if limiter is None:
            limiter = rates[provider] = AdaptiveRateLimiter(self._clock)
        return limiter

    # -- URLs and headers ---------------------------------------------------------------

    def url(self, path_or_url: str) -> str:
        """An absolute URL: a path is taken relative to the gateway's base URL."""
        if "://" in path_or_url:
            return path_or_url
        return self.base_url + path_or_url.lstrip("/")

    def is_gateway_origin(self, url: str) -> bool:
        return origin_of(url) == self._origin

    def _headers_for(self, url: str, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        # URLs built from base_url skip the parse: they are the gateway by construction.
        if url.startswith(self.base_url) or self.is_gateway_origin(url):
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    # -- one exchange -------------------------------------------------------------------------

    async def _send(
        self,
        request: HTTPRequest,
        limiter: AdaptiveRateLimiter,
        task_id: str | None,
        deadline: float | None = None,
    ) -> tuple[HTTPResponse, float]:
        self.check_open()
        try:
            sent_at = await limiter.acquire(deadline)
            await self._pool.global_rate.acquire(deadline)
        except TransportError as exc:
            exc.task_id = task_id
            raise
        self.request_count += 1
        try:
            response = await self._transport.send(request)
        except TransportError as exc:
            exc.task_id = task_id
            raise
        except Exception as exc:  # a transport of the user's that breaks the contract
            error = _foreign(exc, request.url, task_id, self._scrub)
        else:
            return _Guarded(response, request.url, task_id, self._scrub), sent_at
        raise error

    async def _error_of(
        self,
        response: HTTPResponse,
        limiter: AdaptiveRateLimiter,
        sent_at: float,
        task_id: str | None,
        payload: bytes | None = None,
    ) -> APIError:
        if payload is None:
            payload = await response.read(_ERROR_BODY_LIMIT)
        error = api_error(response.status, payload, response.headers, task_id=task_id)
        if isinstance(error, RateLimitError):
            retry_after = error.retry_after
            if retry_after is not None:  # a hostile Retry-After must not freeze a provider
                retry_after = min(retry_after, self.retry.policy.max_retry_after)
            limiter.on_throttled(sent_at, retry_after)
        return error

    # -- JSON requests ------------------------------------------------------------------------

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        provider: str,
        kind: RequestKind,
        json: Mapping[str, object] | None = None,
        form: Mapping[str, str] | None = None,
        files: Mapping[str, FilePart] | None = None,
        headers: Mapping[str, str] | None = None,
        task_id: str | None = None,
        idempotency_key: str | None = None,
        deadline: float | None = None,
    ) -> dict[str, object]:
        """Send one request, with the retries :class:`RetryDecision` allows for ``kind``.

        ``deadline`` (a time on the client's clock, from a wait) bounds the
        whole: each attempt's timeout is cut to the time left, and no retry
        sleeps or starts past it.

        Raises:
            CreateOutcomeUnknown: a create that may have made a task.
            APIError: the gateway's final error answer.
            TransportError: no answer, retries spent.
            ProtocolError: an answer that is not a JSON object.
        """
        url = self.url(path)
        request = HTTPRequest(
            method=method,
            url=url,
            headers=self._headers_for(url, headers),
            json=json,
            form=form,
            files=files,
            timeout=self._request_timeout,
        )
        limiter = self.rate_limiter(provider)
        attempt = 0
        while True:
            try:
                if kind != "create":
                    return await self._exchange_json(
                        self._within(request, deadline), limiter, task_id, deadline
                    )
                # A create once sent is seen through to its answer, even when the caller
                # is cancelled: abandoning it would lose a task that is being paid for.
                # The anyio shield defers a cancel scope's cancel (a batch closing gets
                # the job); _see_through covers a plain asyncio cancel (wait_for,
                # Task.cancel), which no anyio shield stops.
                with anyio.CancelScope(shield=True):
                    return await self._see_through(request, limiter, idempotency_key)
            except (TransportError, APIError, ProtocolError) as exc:
                wait = self.retry.after(
                    kind, attempt, exc, idempotency_key=idempotency_key, deadline=deadline
                )
            logger.debug("retrying %s %s in %.3fs", method, urlsplit(url).path, wait.delay)
            await self._clock.sleep(wait.delay)
            attempt += 1

    def _within(self, request: HTTPRequest, deadline: float | None) -> HTTPRequest:
        # Timeouts.request must not carry a wait past its deadline. Virtual seconds
        # (a ManualClock, where a request takes no time) are no network timeout.
        if deadline is None or isinstance(self._clock, ManualClock):
            return request
        left = max(deadline - self._clock.monotonic(), _MIN_ATTEMPT_TIME)
        return attrs.evolve(request, timeout=min(self._request_timeout, left))

    async def _see_through(
        self, request: HTTPRequest, limiter: AdaptiveRateLimiter, idempotency_key: str | None
    ) -> dict[str, object]:
        """One create exchange that a native cancellation cannot abandon mid-flight.

        The exchange runs in a task of its own. When the caller is cancelled,
        that task is awaited to its end (at most ``Timeouts.request``, however
        often the cancel is repeated), what it found is logged at WARNING with
        the idempotency key so the task can be found, and the cancellation then
        goes on: it is delayed, never swallowed.
        """
        loop = asyncio.get_running_loop()
        exchange = loop.create_task(self._exchange_json(request, limiter, None))
        try:
            return await asyncio.shield(exchange)
        except asyncio.CancelledError:
            await _finish_within(exchange, self._request_timeout)
            _log_abandoned_create(exchange, idempotency_key)
            raise

    async def _exchange_json(
        self,
        request: HTTPRequest,
        limiter: AdaptiveRateLimiter,
        task_id: str | None,
        deadline: float | None = None,
    ) -> dict[str, object]:
        response, sent_at = await self._send(request, limiter, task_id, deadline)
        try:
            payload = await self._read_bounded(response, request)
        finally:
            await response.aclose()
        if response.status >= 400:
            raise await self._error_of(response, limiter, sent_at, task_id, payload)
        limiter.on_success()
        data = parse_json_object(payload)
        if data is not None:
            return data
        raise ProtocolError(
            f"expected a JSON object from {request.method} {urlsplit(request.url).path}, "
            f"got {len(payload)} bytes of something else",
            status=response.status,
        )

    async def _read_bounded(self, response: HTTPResponse, request: HTTPRequest) -> bytes:
        """The whole body, or ProtocolError as soon as it passes the limit (never read whole).

        An error answer is cut instead: its status says what happened, and its
        message is in the first 64 KiB if anywhere.
        """
        is_error = response.status >= 400
        limit = self._max_response_bytes
        if is_error:
            limit = min(limit, _ERROR_BODY_LIMIT)
        path = urlsplit(request.url).path
        announced = response.headers.get("Content-Length", "")
        if not is_error and announced.isdigit() and int(announced) > limit:
            raise _too_big(request.method, path, limit, response.status)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # at most one network chunk past the limit is held
                if is_error:
                    return self._scrub.body(b"".join(chunks)[:limit])
                raise _too_big(request.method, path, limit, response.status)
        # Text from the gateway: the key comes out before it can reach an error or a log.
        return self._scrub.body(b"".join(chunks))

    # -- streaming ----------------------------------------------------------------------------

    @asynccontextmanager
    async def stream(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        task_id: str | None = None,
        provider: str,
    ) -> AsyncIterator[HTTPResponse]:
        """Open a GET for streaming (one attempt), following redirects by hand.

        The key is sent only while the URL stays on the gateway's origin.

        Raises:
            APIError: an error answer (its body read up to 64 KiB).
            TransportError: no answer.
            ProtocolError: more than five redirects.
        """
        limiter = self.rate_limiter(provider)
        current = self.url(url)
        for _ in range(_MAX_REDIRECTS + 1):
            request = HTTPRequest(
                method="GET", url=current, headers=self._headers_for(current, headers)
            )
            response, sent_at = await self._send(request, limiter, task_id)
            try:
                location = response.headers.get("Location")
                if response.status in _REDIRECT_STATUSES and location:
                    current = urljoin(current, location)
                    continue
                if response.status >= 400:
                    raise await self._error_of(response, limiter, sent_at, task_id)
                limiter.on_success()
                yield response
                return
            finally:
                await response.aclose()
        raise ProtocolError(f"more than {_MAX_REDIRECTS} redirects fetching the video")
