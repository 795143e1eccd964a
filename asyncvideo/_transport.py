"""The thin seam at the bottom: one aiohttp session, auth, retries, error mapping.

Everything above this module speaks in JSON objects and typed errors; nothing
above it imports aiohttp for requests.
"""

from __future__ import annotations

import builtins
import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Literal
from urllib.parse import urljoin, urlsplit

import aiohttp
import anyio
import attrs

from ._clock import Clock
from ._polling import RetryPolicy
from ._ratelimit import AdaptiveRateLimiter
from ._version import __version__
from .errors import (
    APIError,
    ConfigurationError,
    ConnectError,
    CreateOutcomeUnknown,
    ProtocolError,
    RateLimitError,
    ServerError,
    TimeoutError,
    TransportError,
)
from .providers._parse import api_error, parse_json_object

__all__ = ["TRANSIENT_ERRORS", "Body", "Timeouts", "Transport", "origin_of"]

logger = logging.getLogger("asyncvideo")

_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5

#: A request body: a JSON object, or a factory of multipart form data (aiohttp's
#: FormData can be sent only once, so retries build a fresh one).
Body = Mapping[str, object] | Callable[[], aiohttp.FormData] | None
RetryMode = Literal["safe", "create"]

#: Errors after which a status query is simply tried again at the next scheduled poll.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    TransportError,
    ServerError,
    RateLimitError,
    ProtocolError,
)


@attrs.frozen(kw_only=True)
class Timeouts:
    """Network timeouts in seconds.

    Args:
        connect: to open a connection (a create that times out here was never sent).
        read: between bytes of an answer; a stalled download fails after this.
        request: the whole of one JSON request/answer (not downloads).
    """

    connect: float = 10.0
    read: float = 60.0
    request: float = 120.0


Timeouts.__module__ = "asyncvideo"


def origin_of(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` with default ports filled in, for same-origin checks."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


class Transport:
    """Sends requests to one gateway and turns answers into JSON or typed errors.

    The API key is attached only to URLs on the gateway's own origin, so it
    never reaches a CDN or a redirect to another host.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        clock: Clock,
        retry: RetryPolicy,
        timeouts: Timeouts,
        max_connections: int,
        requests_per_second: float | None,
        honours_idempotency_keys: bool,
        rng: random.Random,
    ) -> None:
        self._api_key = api_key
        self.base_url = base_url.rstrip("/") + "/"
        self._origin = origin_of(self.base_url)
        self._clock = clock
        self._retry = retry
        self._timeouts = timeouts
        self._max_connections = max_connections
        self._honours_keys = honours_idempotency_keys
        self._rng = rng
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        # The client-wide cap; per-provider adaptive limiters sit in front of it.
        self._global_rate = AdaptiveRateLimiter(clock, ceiling=requests_per_second)
        self._provider_rates: dict[str, AdaptiveRateLimiter] = {}
        self.request_count = 0

    def __repr__(self) -> str:
        return f"<Transport {self.base_url}>"

    # -- session -----------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ConfigurationError("this client is closed; create a new Client")
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=self._max_connections
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": f"asyncvideo/{__version__}"},
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self._timeouts.connect, sock_read=self._timeouts.read
                ),
                auto_decompress=True,
            )
        return self._session

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def rate_limiter(self, provider: str) -> AdaptiveRateLimiter:
        """The adaptive rate shared by every request for ``provider``'s jobs."""
        limiter = self._provider_rates.get(provider)
        if limiter is None:
            limiter = self._provider_rates[provider] = AdaptiveRateLimiter(self._clock)
        return limiter

    # -- URLs and headers ---------------------------------------------------------------

    def url(self, path_or_url: str) -> str:
        """An absolute URL: a path is taken relative to the gateway's base URL."""
        if "://" in path_or_url:
            return path_or_url
        return self.base_url + path_or_url.lstrip("/")

    def is_gateway_origin(self, url: str) -> bool:
        return origin_of(url) == self._origin

    def headers_for(self, url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        # URLs built from base_url skip the parse: they are the gateway by construction.
        if url.startswith(self.base_url) or self.is_gateway_origin(url):
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    # -- JSON requests ----------------------------------------------------------------------

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        provider: str,
        body: Body = None,
        headers: Mapping[str, str] | None = None,
        task_id: str | None = None,
        retry_mode: RetryMode = "safe",
        idempotency_key: str | None = None,
    ) -> dict[str, object]:
        """Send one request (with the retries its mode allows) and return the JSON object.

        ``"safe"`` requests (status queries) retry on connection errors,
        timeouts, 408/429/5xx. ``"create"`` requests retry only where the
        gateway provably did not act (connection refused, 429), unless the
        gateway honours idempotency keys; any other failure after sending
        raises :class:`CreateOutcomeUnknown` with the key.
        """
        url = self.url(path)
        limiter = self.rate_limiter(provider)
        attempt = 0
        while True:
            sent_at = await limiter.acquire()
            await self._global_rate.acquire()
            try:
                # A create once sent is seen through to its answer, even when the caller
                # is cancelled: abandoning it would lose a task that is being paid for.
                # The wait is bounded by Timeouts.request.
                with anyio.CancelScope(shield=retry_mode == "create"):
                    status, answer_headers, payload = await self._send_once(
                        method, url, body=body, headers=headers
                    )
            except TransportError as exc:
                exc.task_id = task_id
                # A refused connection never reached the gateway; anything else may have.
                ambiguous = retry_mode == "create" and not isinstance(exc, ConnectError)
                if ambiguous and (not self._honours_keys or self._last_attempt(attempt)):
                    raise CreateOutcomeUnknown.after(exc, idempotency_key=idempotency_key) from exc
                if self._last_attempt(attempt):
                    raise
                await self._clock.sleep(self._retry.backoff(attempt, self._rng))
                attempt += 1
                continue
            if status < 400:
                limiter.on_success()
                data = parse_json_object(payload)
                if data is None:
                    unreadable = ProtocolError(
                        f"expected a JSON object from {method} {urlsplit(url).path}, got "
                        f"{len(payload)} bytes of something else",
                        status=status,
                    )
                    if retry_mode == "create":  # it succeeded: the task may well exist
                        raise CreateOutcomeUnknown.after(
                            unreadable, idempotency_key=idempotency_key
                        ) from unreadable
                    raise unreadable
                return data
            error = api_error(status, payload, answer_headers, task_id=task_id)
            retry_after = error.retry_after if isinstance(error, RateLimitError) else None
            if status == 429:
                limiter.on_throttled(sent_at, retry_after)
            # A 429 was refused before any work; a 5xx or 408 on a create may not have been.
            ambiguous = retry_mode == "create" and status in _RETRYABLE_STATUSES and status != 429
            if ambiguous and (not self._honours_keys or self._last_attempt(attempt)):
                raise CreateOutcomeUnknown.after(error, idempotency_key=idempotency_key) from error
            if status not in _RETRYABLE_STATUSES or self._last_attempt(attempt):
                raise error
            delay = self._retry.backoff(attempt, self._rng, retry_after)
            logger.debug(
                "retrying %s %s after HTTP %s in %.3fs", method, urlsplit(url).path, status, delay
            )
            await self._clock.sleep(delay)
            attempt += 1

    def _last_attempt(self, attempt: int) -> bool:
        return attempt + 1 >= self._retry.max_attempts

    async def _send_once(
        self,
        method: str,
        url: str,
        *,
        body: Body,
        headers: Mapping[str, str] | None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        kwargs: dict[str, object] = {}
        if callable(body):
            kwargs["data"] = body()
        elif body is not None:
            kwargs["data"] = json.dumps(body, separators=(",", ":"))
            headers = {**(headers or {}), "Content-Type": "application/json"}
        self.request_count += 1
        try:
            async with self.session.request(
                method,
                url,
                headers=self.headers_for(url, headers),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=self._timeouts.request,
                    connect=self._timeouts.connect,
                    sock_read=self._timeouts.read,
                ),
                **kwargs,  # type: ignore[arg-type]
            ) as response:
                payload = await response.read()
                return response.status, response.headers, payload
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(
                f"cannot connect to {self._host(url)}: {exc.strerror or exc}"
            ) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise ConnectError(f"timed out connecting to {self._host(url)}") from exc
        except builtins.TimeoutError as exc:
            raise TimeoutError(f"no answer from {self._host(url)} in time") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(
                f"{type(exc).__name__} talking to {self._host(url)}: {exc}"
            ) from exc

    @staticmethod
    def _host(url: str) -> str:
        return urlsplit(url).netloc

    # -- streaming ----------------------------------------------------------------------

    @asynccontextmanager
    async def stream(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        task_id: str | None = None,
        provider: str,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Open a GET for streaming, following redirects by hand.

        Redirects are followed here rather than by aiohttp so the key is sent
        only while the URL stays on the gateway's origin.
        """
        limiter = self.rate_limiter(provider)
        current = self.url(url)
        for _ in range(_MAX_REDIRECTS + 1):
            sent_at = await limiter.acquire()
            await self._global_rate.acquire()
            self.request_count += 1
            try:
                response = await self.session.get(
                    current, headers=self.headers_for(current, headers), allow_redirects=False
                )
            except aiohttp.ClientConnectorError as exc:
                raise ConnectError(
                    f"cannot connect to {self._host(current)}", task_id=task_id
                ) from exc
            except builtins.TimeoutError as exc:
                raise TimeoutError(
                    f"no answer from {self._host(current)} in time", task_id=task_id
                ) from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise TransportError(
                    f"{type(exc).__name__} talking to {self._host(current)}", task_id=task_id
                ) from exc
            try:
                if response.status in _REDIRECT_STATUSES and "Location" in response.headers:
                    current = urljoin(current, response.headers["Location"])
                    continue
                if response.status >= 400:
                    payload = await response.content.read(64 * 1024)
                    error: APIError = api_error(
                        response.status, payload, response.headers, task_id=task_id
                    )
                    if response.status == 429:
                        limiter.on_throttled(
                            sent_at,
                            error.retry_after if isinstance(error, RateLimitError) else None,
                        )
                    raise error
                limiter.on_success()
                yield response
                return
            finally:
                response.release()
        raise ProtocolError(f"more than {_MAX_REDIRECTS} redirects fetching the video")
