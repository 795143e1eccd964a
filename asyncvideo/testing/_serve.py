"""Streaming a video with Range, If-Range and ETag, optionally cut short."""

from __future__ import annotations

import asyncio
import gzip as gzip_codec
from collections.abc import Mapping

from aiohttp import web

from ._mp4 import VideoFile
from ._stats import GatewayStats

__all__ = ["stream_video"]


class _Unsatisfiable(Exception):
    pass


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """``[start, end)`` for a single-range ``bytes=`` header; ``None`` = whole file.

    Multi-range and malformed headers are ignored (a 200 is a valid answer to
    any Range request); a range starting past the end is unsatisfiable.
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first:  # "bytes=-N": the last N bytes
            suffix = int(last)
            if suffix <= 0:
                raise _Unsatisfiable
            return max(0, size - suffix), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size:
        raise _Unsatisfiable
    if end <= start:
        return None
    return start, min(end, size)


async def stream_video(
    request: web.Request,
    video: VideoFile,
    *,
    stats: GatewayStats,
    chunk_size: int,
    drop_after: int | None,
    drop_stall: float = 0.0,
    filename: str | None = None,
    gzip: bool = False,
    extra_headers: Mapping[str, str] | None = None,
    chunk_delay: float = 0.0,
) -> web.StreamResponse:
    """Answer with ``video`` (200, or 206 for a Range), cutting the connection
    ``drop_stall`` real seconds after ``drop_after`` body bytes when given.

    With ``gzip`` the body goes gzip-encoded, as a compressing proxy sends it:
    ``Content-Length`` is the encoded size, ``Range`` is ignored and there is
    no validator to resume against.
    """
    headers = {"Content-Type": "video/mp4", **(extra_headers or {})}
    if filename is not None:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    if gzip:
        encoded = gzip_codec.compress(video.to_bytes(), compresslevel=1)
        video = VideoFile(head=b"", body=encoded, etag="")
        headers["Content-Encoding"] = "gzip"
    else:
        headers.update({"Accept-Ranges": "bytes", "ETag": video.etag})
    size = video.size
    start, end = 0, size
    range_header = None if gzip else request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    # If-Range naming another version means "send it all again".
    if range_header and (if_range is None or if_range.strip() == video.etag):
        try:
            span = _byte_range(range_header, size)
        except _Unsatisfiable:
            headers["Content-Range"] = f"bytes */{size}"
            return web.Response(status=416, headers=headers)
        if span is not None:
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response = web.StreamResponse(
        status=206 if "Content-Range" in headers else 200, headers=headers
    )
    response.content_length = end - start
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    limit = end if drop_after is None else min(end, start + drop_after)
    written = 0
    try:
        for piece in video.slices(start, limit, chunk_size):
            if chunk_delay and written:
                await asyncio.sleep(chunk_delay)  # real time: a slow link, not a clock
            await response.write(piece)
            written += len(piece)
    except ConnectionError:
        stats.bytes_served += written
        return response  # the client went away; nothing left to do
    stats.bytes_served += written
    if limit < end:
        # Stall before the cut, as a dying connection does: a client reading
        # normally gets the bytes already sent (aiohttp discards buffered data
        # once it sees the connection error), so a resume has something to resume.
        await asyncio.sleep(drop_stall)
        if request.transport is not None:
            request.transport.close()  # flushes what was written, then closes
        stats.dropped_connections += 1
        return response
    await response.write_eof()
    stats.downloads_completed += 1
    return response
