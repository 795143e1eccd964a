"""The transport seam (:class:`AsyncTransport`), its aiohttp implementation, and the
connection to one gateway above it."""

from __future__ import annotations

from .._public import publish
from ._aiohttp import AiohttpTransport, ClientSession, Timeouts
from ._base import AsyncTransport, FilePart, HTTPRequest, HTTPResponse
from ._connection import GatewayConnection, origin_of

__all__ = [
    "AiohttpTransport",
    "AsyncTransport",
    "ClientSession",
    "FilePart",
    "GatewayConnection",
    "HTTPRequest",
    "HTTPResponse",
    "Timeouts",
    "origin_of",
]

publish(AiohttpTransport, AsyncTransport, FilePart, HTTPRequest, HTTPResponse, Timeouts)
