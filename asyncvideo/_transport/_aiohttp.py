"""The default transport: aiohttp, behind :class:`~asyncvideo.AsyncTransport`.

This is the only module of the SDK (``asyncvideo.testing`` aside) that
imports aiohttp, and the only place where aiohttp's exceptions become the
SDK's: one table, used for sending and for reading bodies alike.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

import aiohttp
import attrs

from .._validators import positive_number
from .._version import __version__
from ..errors import ConfigurationError, ConnectError, TimeoutError, TransportError
from ._base import HTTPRequest, HTTPResponse

__all__ = ["AiohttpTransport", "ClientSession", "Timeouts"]

#: What ``Client(session=...)`` takes: an aiohttp session of the caller's.
ClientSession = aiohttp.ClientSession


@attrs.frozen(kw_only=True)
class Timeouts:
    """Network timeouts in seconds.

    Args:
        connect: to open a connection (a create that times out here was never sent).
        read: between bytes of an answer: the download stall timeout (a
            download that receives nothing for this long fails with
            :class:`~asyncvideo.errors.TimeoutError` and is retried, counted).
            A slow drip is cut by ``RetryPolicy.min_download_rate``.
        request: the whole of one JSON request/answer (not downloads).
    """

    connect: float = attrs.field(default=10.0, validator=positive_number)
    read: float = attrs.field(default=60.0, validator=positive_number)
    request: float = attrs.field(default=120.0, validator=positive_number)


def _sdk_error(exc: BaseException, url: str) -> TransportError:
    """The one mapping from what aiohttp raises to what the SDK raises.

    The SDK's error is raised *outside* the ``except`` block, so it has neither
    ``__cause__`` nor ``__context__``: an aiohttp exception may hold the
    request's headers (``ClientResponseError.request_info``), the API key among
    them, and must not travel with the error. Its type and text are kept.
    """
    host = urlsplit(url).netloc
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(f"cannot connect to {host}: {exc.strerror or exc}")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectError(f"timed out connecting to {host}")
    if isinstance(exc, builtins.TimeoutError):
        return TimeoutError(f"no answer from {host} in time")
    # The exception's own text only: a ClientResponseError's repr carries request headers.
    return TransportError(f"{type(exc).__name__} talking to {host}: {exc}")


_MAPPED = (aiohttp.ClientError, OSError, builtins.TimeoutError)


class _Response:
    """An aiohttp response seen through :class:`HTTPResponse`."""

    __slots__ = ("_response", "_url")

    def __init__(self, response: aiohttp.ClientResponse, url: str) -> None:
        self._response = response
        self._url = url

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        error: TransportError | None = None
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except _MAPPED as exc:
            error = _sdk_error(exc, self._url)
        if error is not None:
            raise error  # outside the handler: see _sdk_error

    async def read(self, limit: int | None = None) -> bytes:
        try:
            if limit is None:
                return await self._response.read()
            return await self._response.content.read(limit)
        except _MAPPED as exc:
            error = _sdk_error(exc, self._url)
        raise error  # outside the handler: see _sdk_error

    async def aclose(self) -> None:
        self._response.release()


class _SessionHolder:
    """The one aiohttp session (and pool) of a transport and its re-timed views."""

    __slots__ = ("closed", "max_connections", "owned", "session")

    def __init__(self, session: aiohttp.ClientSession | None, max_connections: int) -> None:
        self.session = session
        self.owned = session is None
        self.max_connections = max_connections
        self.closed = False

    def get(self) -> aiohttp.ClientSession:
        if self.closed:
            raise ConfigurationError("this client is closed; create a new Client")
        if self.session is None or (self.owned and self.session.closed):
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, limit_per_host=self.max_connections
            )
            self.session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": f"asyncvideo/{__version__}"},
                # Per request (send): the views of one pool may differ in timeouts.
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self.session

    async def aclose(self) -> None:
        self.closed = True
        if self.owned and self.session is not None and not self.session.closed:
            await self.session.close()
        self.session = None


class AiohttpTransport:
    """Sends requests with one aiohttp session and connection pool.

    Args:
        session: a session of your own (proxies, tracing, a custom connector);
            it is used as is and not closed by the SDK. Without one, the
            transport makes and owns a session.
        timeouts: connect/read/request timeouts.
        max_connections: the size of the pool it makes (ignored with ``session``).

    Example:
        >>> async def main() -> None:  # doctest: +SKIP
        ...     async with aiohttp.ClientSession(trust_env=True) as session:
        ...         client = Client(api_key="sk-...", base_url="https://gw", session=session)
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        timeouts: Timeouts | None = None,
        max_connections: int = 100,
    ) -> None:
        self._timeouts = timeouts or Timeouts()
        self._holder = _SessionHolder(session, max_connections)
        self._is_view = False

    def __repr__(self) -> str:
        kind = "own" if self._holder.owned else "shared"
        return f"<AiohttpTransport {kind} session{' (view)' if self._is_view else ''}>"

    def with_timeouts(self, timeouts: Timeouts) -> AiohttpTransport:
        """A view of this transport that sends through the same session and pool.

        ``Client.with_options(timeouts=...)`` uses it. Closing the view does
        nothing; closing this transport closes the pool for both.

        Args:
            timeouts: the view's connect/read/request timeouts.
        """
        view = AiohttpTransport.__new__(AiohttpTransport)
        view._timeouts = timeouts
        view._holder = self._holder
        view._is_view = True
        return view

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        session = self._holder.get()
        timeouts = self._timeouts
        headers = dict(request.headers)
        if request.json is not None:
            headers.setdefault("Content-Type", "application/json")
        error: TransportError | None = None
        try:
            response = await session.request(
                request.method,
                request.url,
                headers=headers,
                data=_body(request),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=request.timeout, connect=timeouts.connect, sock_read=timeouts.read
                ),
            )
        except _MAPPED as exc:
            error = _sdk_error(exc, request.url)
        if error is not None:
            raise error  # outside the handler: see _sdk_error
        return _Response(response, request.url)

    async def aclose(self) -> None:
        if not self._is_view:
            await self._holder.aclose()


def _body(request: HTTPRequest) -> aiohttp.FormData | str | None:
    if request.form is not None or request.files:
        # The seeds require multipart even without a file; aiohttp would otherwise
        # send a text-only form urlencoded.
        form = aiohttp.FormData(default_to_multipart=True)
        for key, value in (request.form or {}).items():
            form.add_field(key, value)
        for key, part in (request.files or {}).items():
            form.add_field(key, part.data, filename=part.filename, content_type=part.content_type)
        return form
    if request.json is not None:
        return json.dumps(request.json, separators=(",", ":"))
    return None
