"""The seam at the bottom: what the SDK needs from an HTTP client, and nothing more.

One request in, one response out: status, headers and an async body stream.
Redirects are not followed here (the layer above walks them, so the API key
never follows a redirect to another host), and every failure to get an answer
is raised as an :class:`~asyncvideo.errors.TransportError` subclass, so nothing
above this module knows which HTTP library sits below it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol, runtime_checkable

import attrs

__all__ = ["AsyncTransport", "FilePart", "HTTPRequest", "HTTPResponse"]


@attrs.frozen
class FilePart:
    """A file in a multipart body."""

    data: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")
    filename: str
    content_type: str = "application/octet-stream"


@attrs.frozen(kw_only=True)
class HTTPRequest:
    """One request to send.

    At most one body: ``json`` (sent as ``application/json``), or ``form``
    with ``files`` (always sent as ``multipart/form-data``: the gateways
    require multipart even when there is no file).

    Args:
        method: ``"GET"``, ``"POST"``…
        url: an absolute URL.
        headers: sent as given (the caller has already decided about auth).
        json: a JSON body.
        form: text fields of a multipart body.
        files: file fields of a multipart body.
        timeout: seconds for the whole exchange, body included; ``None`` for
            streams, whose reads are bounded by the transport's read timeout.
    """

    method: str
    url: str
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    json: object = None
    form: Mapping[str, str] | None = None
    files: Mapping[str, FilePart] | None = None
    timeout: float | None = None


@runtime_checkable
class HTTPResponse(Protocol):
    """An answer whose body has not been read yet.

    ``headers`` look up names case-insensitively. The body arrives decoded
    (a ``Content-Encoding`` the transport understands is undone), and a failure
    while reading it raises a :class:`~asyncvideo.errors.TransportError`.
    """

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body in the chunks the network delivers."""
        ...

    async def read(self, limit: int | None = None) -> bytes:
        """The body (at most ``limit`` bytes of it)."""
        ...

    async def aclose(self) -> None:
        """Release the connection (safe to call twice)."""
        ...


@runtime_checkable
class AsyncTransport(Protocol):
    """Sends requests; the SDK's only way to the network.

    Pass one to ``Client(transport=...)`` to use your own HTTP stack, proxies
    or tracing; the default is :class:`~asyncvideo.AiohttpTransport`.
    """

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        """Send ``request`` and return once the status and headers have arrived.

        Raises:
            ConnectError: the request never reached the server.
            TimeoutError: no answer in time.
            TransportError: any other failure to get an answer.
        """
        ...

    async def aclose(self) -> None:
        """Release connections this transport owns."""
        ...
