"""Streaming, resumable, verified downloads.

The body streams to ``<dest>.part`` beside the destination in fixed chunks
(memory does not grow with file size). A dropped connection resumes with
``Range``/``If-Range``. The result must have the announced length, start like
an MP4 (an ``ftyp`` box), have top-level boxes whose sizes add up to its length
and hold a ``moov`` box (the index no player can do without) before it is
fsynced and renamed into place, so a JSON error page is never saved as a video
and a half file never appears under the final name.

Videos are asked for with ``Accept-Encoding: identity``. A server that encodes
anyway (the LiteLLM proxy gzips content) announces the *encoded* length, so
the length check is skipped for it and a drop restarts from byte 0: byte
offsets of a decoded stream mean nothing to a ``Range`` on the encoded one.
A content endpoint that answers "not ready yet" just after success (the
new-api relay does until its poller catches up) is retried for
``RetryPolicy.not_ready_window`` seconds.

A server that drips bytes is cut when the rate over a window falls below
``RetryPolicy.min_download_rate`` (timed by the injected clock); one that sends
nothing fails after ``Timeouts.read``. Both are retried by the one retry
decision and count as failed attempts, while an attempt cut off after the
file advanced does not: a CDN that drops every 300 KB still delivers 3 MB.

Every file-system failure (a folder that is a file, a read-only or full disk)
is an :class:`~asyncvideo.errors.OutputError` naming the path, and a URL that
cannot be used (a port past 65535, no host) a ``DownloadError`` before any
request.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import anyio
import attrs

from ._clock import Clock
from ._fs import output_error
from ._logtext import printable
from ._models import Job
from ._states import JobState
from ._transport import GatewayConnection, HTTPResponse
from .errors import (
    APIError,
    DownloadError,
    IntegrityError,
    TimeoutError,
    TransportError,
    VideoExpiredError,
)
from .providers._parse import parse_json_object

__all__ = [
    "download_job",
    "download_to_file",
    "looks_like_mp4",
    "mp4_boxes_end",
    "safe_filename",
]

logger = logging.getLogger("asyncvideo")

# Real MP4s have a handful (fragmented ones a few hundred); this bounds a hostile file.
_MAX_TOP_LEVEL_BOXES = 100_000
_NOT_VIDEO_TYPES = ("application/json", "text/", "application/xml", "application/problem")


#: A name's budget in UTF-8 bytes: file systems count bytes (255), and a batch adds
#: an index and ``.mp4`` (and ``.part`` while downloading) around it.
_MAX_NAME_BYTES = 120


def safe_filename(text: str) -> str:
    """A task id as a file name: no separators or dots that could leave the folder.

    Cut to 120 UTF-8 bytes (100 CJK characters are 300); a cut name ends in a
    hash of the whole id, so two long ids that share a beginning stay apart.

    Example:
        >>> safe_filename("../a b")
        '___a_b'
    """
    cleaned = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)
    encoded = cleaned.encode()
    if len(encoded) <= _MAX_NAME_BYTES:
        return cleaned or "video"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    head = encoded[: _MAX_NAME_BYTES - len(digest) - 1].decode("utf-8", "ignore")
    return f"{head}_{digest}"


def looks_like_mp4(head: bytes) -> bool:
    """True when ``head`` starts with an ISO base media ``ftyp`` box."""
    return len(head) >= 8 and head[4:8] == b"ftyp"


def _open_part(path: Path, offset: int) -> BinaryIO:
    try:
        handle = path.open("r+b" if offset else "w+b")
    except FileNotFoundError:
        # The folder is missing only the first time; creating it here saves a
        # thread hop on every other download.
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("r+b" if offset else "w+b")
    handle.truncate(offset)
    handle.seek(offset)
    return handle


def mp4_boxes_end(read_at: Callable[[int, int], bytes], size: int) -> int:
    """Where the file's top-level boxes say it ends (``size`` when it is whole).

    A body cut short (a close-delimited or gzip-encoded body has no length to
    check) ends inside its last box, so the boxes reach past ``size``.

    Raises:
        IntegrityError: a box header no MP4 has.
    """
    return _walk_boxes(read_at, size)[0]


def _walk_boxes(read_at: Callable[[int, int], bytes], size: int) -> tuple[int, set[bytes]]:
    """Where the top-level boxes end, and the types of those that fit in ``size``."""
    position = 0
    kinds: set[bytes] = set()
    for _ in range(_MAX_TOP_LEVEL_BOXES):
        if position >= size:
            return position, kinds
        header = read_at(16, position)
        if len(header) < 8:
            return position + 8, kinds  # cut inside a box header
        box_size = int.from_bytes(header[:4], "big")
        kinds.add(header[4:8])
        if box_size == 0:  # "extends to the end of the file"
            return size, kinds
        if box_size == 1:  # a 64-bit size follows the type
            if len(header) < 16:
                return position + 16, kinds
            box_size = int.from_bytes(header[8:16], "big")
            if box_size < 16:
                raise IntegrityError(f"MP4 box at byte {position} has a size of {box_size}")
        elif box_size < 8:
            raise IntegrityError(f"MP4 box at byte {position} has a size of {box_size}")
        position += box_size
    raise IntegrityError(f"more than {_MAX_TOP_LEVEL_BOXES} top-level MP4 boxes")


def is_complete_mp4(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a whole MP4 (boxes add up, ``moov`` present): blocking I/O."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            end, kinds = _walk_boxes(functools.partial(os.pread, handle.fileno()), size)
    except (OSError, IntegrityError):
        return False
    return end == size and b"ftyp" in kinds and b"moov" in kinds


def _finish(handle: BinaryIO, part: Path, dest: Path, task_id: str | None) -> None:
    try:
        handle.flush()
        size = os.fstat(handle.fileno()).st_size
        end, kinds = _walk_boxes(functools.partial(os.pread, handle.fileno()), size)
        if end != size:
            # Truncation is a transport failure: retried (resumed where a range is possible).
            raise TransportError(f"the body ended at byte {size} inside an MP4 box ending at {end}")
        if b"moov" not in kinds:
            # Whole as sent, and still no video: fetching it again would give the same bytes.
            raise IntegrityError(
                "the downloaded body is not a playable MP4 (no moov box)", task_id=task_id
            )
        os.fsync(handle.fileno())
        handle.close()
    except OSError as exc:  # neither error above is an OSError: only the disk's land here
        raise output_error(exc, part, "write", task_id) from exc
    try:
        os.replace(part, dest)
    except OSError as exc:
        raise output_error(exc, dest, "save the video as", task_id) from exc


def _error_summary(body: bytes) -> str:
    payload = parse_json_object(body)
    if payload is not None:
        inner = payload.get("error")
        fields = inner if isinstance(inner, dict) else payload
        message = fields.get("message")
        if isinstance(message, str) and message:
            return message
    return " ".join(body[:120].decode("utf-8", "replace").split()) or "an empty body"


@attrs.define
class _Part:
    """``<dest>.part`` between attempts: how many bytes it holds and how to resume them."""

    path: Path
    offset: int = 0
    validator: str | None = None  # ETag or Last-Modified of the bytes already in it
    handle: BinaryIO | None = None

    def kept(self) -> int:
        """The bytes the next attempt will not fetch again."""
        return self.offset if self.validator else 0

    def resume_headers(self) -> dict[str, str]:
        headers = {"Accept-Encoding": "identity"}
        if self.offset and self.validator:
            headers["Range"] = f"bytes={self.offset}-"
            headers["If-Range"] = self.validator
        return headers

    def open_at(self, offset: int, task_id: str | None) -> BinaryIO:
        self.close()
        self.offset = offset
        # Opening a local file takes microseconds; a thread hop costs more CPU.
        try:
            self.handle = _open_part(self.path, offset)
        except OSError as exc:
            raise output_error(exc, self.path, "open", task_id) from exc
        return self.handle

    def close(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.close()  # a failed flush still closes the file, then raises


async def download_to_file(
    connection: GatewayConnection,
    url: str,
    dest: Path,
    *,
    provider: str,
    task_id: str | None,
    clock: Clock,
    params: Mapping[str, str] | None = None,
) -> int:
    """Stream ``url`` into ``dest``; returns the number of bytes written.

    Raises:
        IntegrityError: the body is not an MP4 or its length is wrong.
        DownloadError: the server sent something that is not a video, the
            transfer kept failing (cut, stalled or too slow), or ``url``
            cannot be used (no host, a port past 65535).
        APIError: the server answered with an error status.
        OutputError: the file system refused the ``.part`` or ``dest``.
    """
    if params:
        url = _with_query(url, params)
    url = _usable_url(connection, url, task_id)
    part = _Part(dest.with_name(dest.name + ".part"))
    attempt = not_ready_waits = most_kept = 0
    # Only the gateway's own content endpoint lags behind a success; a CDN that
    # says "not ready" falls back to that endpoint at once instead.
    not_ready_until = (
        clock.monotonic() + connection.retry.policy.not_ready_window
        if connection.is_gateway_origin(connection.url(url))
        else None
    )
    try:
        while True:
            try:
                return await _attempt(connection, url, dest, part, provider, task_id, clock)
            except (TransportError, APIError) as exc:
                # Every transport and API error of the download gets its task id here.
                exc.task_id = task_id
                # Cut off, but further than ever: the budget is for attempts that
                # get nowhere (a slow or stalled one always counts).
                progressed = part.kept() > most_kept and not isinstance(exc, TimeoutError)
                most_kept = max(most_kept, part.kept())
                wait = connection.retry.after(
                    "download",
                    attempt,
                    exc,
                    not_ready_waits=not_ready_waits,
                    not_ready_until=not_ready_until,
                    progressed=progressed,
                )
                if wait.counted:
                    attempt += 1
                elif not progressed:
                    not_ready_waits += 1
                await clock.sleep(wait.delay)
    except BaseException:
        # Keep a resumable .part only while this call is retrying; a failed or
        # cancelled download leaves nothing behind that could pass for a video.
        # Neither step may hide the error that got us here: a full disk fails the
        # flush again, and a folder that is a file cannot hold a .part either.
        with contextlib.suppress(OSError):
            part.close()
        with anyio.CancelScope(shield=True), contextlib.suppress(OSError):
            await anyio.Path(part.path).unlink()  # no .part yet: suppressed like the rest
        raise


async def _attempt(
    connection: GatewayConnection,
    url: str,
    dest: Path,
    part: _Part,
    provider: str,
    task_id: str | None,
    clock: Clock,
) -> int:
    """One request for the body (resuming ``part`` where it can); the bytes in ``dest``."""
    headers = part.resume_headers()
    async with connection.stream(url, headers=headers, provider=provider) as response:
        content_type = response.headers.get("Content-Type", "").lower()
        if content_type.startswith(_NOT_VIDEO_TYPES):
            body = await response.read(64 * 1024)
            raise DownloadError(
                f"expected a video, got {content_type}: {_error_summary(body)}", task_id=task_id
            )
        encoded = _is_encoded(response)
        start = _body_start(response, part.offset, asked="Range" in headers)
        if start is None:
            part.validator = None  # ask for the whole body next time
            raise TransportError(
                "the server answered with a range that does not continue the file "
                f"({response.headers.get('Content-Range', 'no Content-Range')})"
            )
        total = None if encoded else _expected_total(response, start)
        part.validator = (
            None
            if encoded
            else (response.headers.get("ETag") or response.headers.get("Last-Modified"))
        )
        handle = part.open_at(start, task_id)
        policy = connection.retry.policy
        floor = _RateFloor(
            clock, policy.min_download_rate, policy.download_rate_window, clock.monotonic()
        )
        written = await _write_body(response, handle, part, floor, task_id)
        if total is not None and written != total:
            raise TransportError(f"connection ended after {written} of {total} bytes")
        if written < 8:
            raise IntegrityError(
                f"the downloaded body is {written} bytes, not a video", task_id=task_id
            )
        await anyio.to_thread.run_sync(_finish, handle, part.path, dest, task_id)
        return written


@attrs.define
class _RateFloor:
    """Fails a body that arrives slower than ``rate`` bytes/s over each ``window`` seconds."""

    clock: Clock
    rate: float  # 0: no floor
    window: float
    since: float
    received: int = 0

    def add(self, count: int) -> None:
        self.received += count
        now = self.clock.monotonic()
        elapsed = now - self.since
        if not self.rate or elapsed < self.window:
            return
        if self.received < self.rate * elapsed:
            raise TimeoutError(
                f"the download fell below {self.rate:g} bytes/s "
                f"({self.received} bytes in {elapsed:.3g} s)"
            )
        self.since, self.received = now, 0


async def _write_body(
    response: HTTPResponse, handle: BinaryIO, part: _Part, floor: _RateFloor, task_id: str | None
) -> int:
    """Append the body to ``handle``, checking that a fresh file starts like an MP4."""
    written = part.offset
    head: bytes | None = None if written else b""
    async for chunk in response.iter_bytes():
        if head is not None:
            head += chunk[:8]
            if len(head) >= 8:
                if not looks_like_mp4(head):
                    raise IntegrityError(
                        "the downloaded body is not an MP4 (no ftyp box)", task_id=task_id
                    )
                head = None
        # Each socket read goes straight to the page cache (cheaper inline than a
        # thread hop, and a drop loses nothing already received); the slow part,
        # fsync, runs in a worker thread.
        try:
            handle.write(chunk)
        except OSError as exc:
            raise output_error(exc, part.path, "write", task_id) from exc
        written += len(chunk)
        part.offset = written
        floor.add(len(chunk))
    return written


async def download_job(
    connection: GatewayConnection,
    job: Job,
    dest: Path,
    *,
    content_path: str | None,
    clock: Clock,
    variant: str | None = None,
) -> int:
    """Download a succeeded job's video from wherever it is; returns the bytes written.

    The job's own URL first (a CDN, usually), then the gateway's content
    endpoint (``content_path``, ``{id}`` standing for the task id): a CDN link
    can lapse before ``expires_at`` says, and the gateway may still serve the
    video. A ``variant`` is asked of the content endpoint only.

    Raises:
        JobFailedError: the job failed or was cancelled.
        DownloadError: the job has not succeeded, or has no video anywhere.
        VideoExpiredError: its ``expires_at`` has passed (nothing is sent).
    """
    job.raise_for_state()
    if job.state is not JobState.SUCCEEDED:
        raise DownloadError(
            f"job {job.id} is still {job.state.value}; wait for it first", task_id=job.id
        )
    if job.expires_at is not None and clock.time() >= job.expires_at.timestamp():
        raise VideoExpiredError(
            f"the video of job {job.id} expired at {job.expires_at.isoformat()}", task_id=job.id
        )
    sources = [job.video_url] if job.video_url and variant is None else []
    if content_path is not None:
        content_url = connection.url(content_path.replace("{id}", quote(job.id, safe="")))
        # A relay may give its own content endpoint as the video URL (new-api does for Sora).
        if content_url not in sources:
            sources.append(content_url)
    if not sources:
        raise DownloadError(f"job {job.id} has no video URL", task_id=job.id)
    provider = job.provider
    for url in sources[:-1]:
        try:
            return await download_to_file(
                connection, url, dest, provider=provider, task_id=job.id, clock=clock
            )
        except APIError as exc:
            if exc.status not in (403, 404, 410):
                raise
            logger.info(
                "video URL of %s refused (%s); trying the content endpoint",
                printable(job.id),
                exc.status,
            )
    return await download_to_file(
        connection,
        sources[-1],
        dest,
        provider=provider,
        task_id=job.id,
        clock=clock,
        params={"variant": variant} if variant else None,
    )


def _usable_url(connection: GatewayConnection, url: str, task_id: str | None) -> str:
    """``url`` made absolute, or a DownloadError for one no request can go to."""
    try:
        absolute = connection.url(url)
        parts = urlsplit(absolute)
        _ = parts.port  # raises for a port past 65535
    except ValueError as exc:
        raise DownloadError(
            f"the video URL cannot be used: {exc}", task_id=task_id
        ) from None  # the URL itself may carry a signature; the message names no part of it
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DownloadError(
            f"the video URL cannot be used: {parts.scheme or 'no'} scheme, "
            f"{'host ' + repr(parts.hostname) if parts.hostname else 'no host'}",
            task_id=task_id,
        )
    return absolute


def _with_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _body_start(response: HTTPResponse, offset: int, *, asked: bool) -> int | None:
    """Where in the file this body starts: 0 for a whole body, ``offset`` for the range
    asked for, ``None`` for a range that would not continue the file."""
    if response.status != 206:
        return 0
    if not asked or _is_encoded(response):
        return None  # a range nobody asked for, or of bytes we never saw
    first, _, _ = response.headers.get("Content-Range", "").partition("-")
    start = first.rpartition(" ")[2]
    if start.isdigit() and int(start) in (0, offset):
        return int(start)
    return None


def _is_encoded(response: HTTPResponse) -> bool:
    return response.headers.get("Content-Encoding", "identity").strip().lower() not in (
        "",
        "identity",
    )


def _expected_total(response: HTTPResponse, start: int) -> int | None:
    """The file's length as announced, for a body that starts at byte ``start``."""
    if response.status == 206:
        # _body_start accepted this range, so its Content-Range is there.
        _, _, total_text = response.headers["Content-Range"].rpartition("/")
        if total_text.isdigit():
            return int(total_text)
    length_text = response.headers.get("Content-Length", "").strip()
    if not length_text.isdigit():
        return None
    return start + int(length_text)  # a whole body starts at 0
