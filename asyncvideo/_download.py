"""Streaming, resumable, verified downloads: to a file, or chunk by chunk to the caller.

One path fetches every video body, :class:`_VideoBody`. It tries the job's
sources in order (its own URL, usually a CDN, then the gateway's content
endpoint: a CDN link can lapse before ``expires_at`` says), retries each with
the one retry decision, resumes a dropped connection with ``Range``/``If-Range``
(a range sent under another ``ETag`` than the bytes before it, from a server
that ignored ``If-Range``, is never spliced on), and checks the bytes as they
pass: a JSON or HTML page is refused by its type, a fresh body must start
with an ``ftyp`` box before any byte of it is handed on, it must have the
announced length, and its top-level boxes must add up to that length and hold
a ``moov`` box (the index no player can do without). Memory does not grow
with file size. Two readers share it:

* :func:`download_job` writes the body to ``<dest>.part`` beside the
  destination, then fsyncs it and renames it into place, so a JSON error page
  is never saved as a video and a half file never appears under the final
  name. A file may start again from byte 0 (a server that cannot resume, a
  lapsed link that falls back to the content endpoint, an encoded body).
* :class:`VideoStream` (``Client.open_video``) hands the body to the caller.
  Bytes handed over cannot be taken back, so a drop resumes only where the
  server continues the same version of the file; otherwise the stream raises
  :class:`~asyncvideo.errors.DownloadError`.

Videos are asked for with ``Accept-Encoding: identity``. A server that encodes
anyway (the LiteLLM proxy gzips content) announces the *encoded* length, so
the length check is skipped for it and a drop restarts from byte 0: byte
offsets of a decoded stream mean nothing to a ``Range`` on the encoded one.
A content endpoint that answers "not ready yet" just after success (the
new-api relay does until its poller catches up) is retried for
``RetryPolicy.not_ready_window`` seconds.

A server that drips bytes is cut when the rate over a window falls below
``RetryPolicy.min_download_rate`` (timed by the injected clock, counting only
time spent waiting on the server, not time a stream's reader holds a chunk);
one that sends nothing fails after ``Timeouts.read``. Both are retried by the
one retry decision and count as failed attempts, while an attempt cut off
after the body advanced does not: a CDN that drops every 300 KB still
delivers 3 MB.

Every file-system failure (a folder that is a file, a read-only or full disk)
is an :class:`~asyncvideo.errors.OutputError` naming the path, and a URL that
cannot be used (a port past 65535, no host) a ``DownloadError`` before any
request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import attrs

from ._boxes import BoxWalk, is_complete_mp4, looks_like_mp4, mp4_boxes_end
from ._clock import Clock
from ._fs import output_error
from ._logtext import printable
from ._models import Job
from ._public import publish
from ._states import JobState
from ._transport import GatewayConnection, HTTPResponse
from .errors import (
    APIError,
    AsyncVideoError,
    DownloadError,
    IntegrityError,
    TimeoutError,
    TransportError,
    ValidationError,
    VideoExpiredError,
)
from .providers._parse import id_segment, parse_json_object

__all__ = [
    "VideoStream",
    "download_job",
    "is_complete_mp4",
    "looks_like_mp4",
    "mp4_boxes_end",
    "safe_filename",
]

logger = logging.getLogger("asyncvideo")

_NOT_VIDEO_TYPES = ("application/json", "text/", "application/xml", "application/problem")
#: Types that say nothing about the bytes; a body that passed the checks is an MP4.
_UNTYPED = ("", "application/octet-stream", "binary/octet-stream")
#: Answers from a video URL that lapsed before ``expires_at`` said: try the next source.
_LAPSED = (403, 404, 410)
_HEAD = 8  # bytes of the first box header: its size and "ftyp"

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
class _RateFloor:
    """Fails a body that arrives slower than ``rate`` bytes/s over each ``window``
    seconds spent waiting for it."""

    rate: float  # 0: no floor
    window: float
    waited: float = 0.0
    received: int = 0

    def add(self, count: int, waited: float) -> None:
        self.received += count
        self.waited += waited
        if not self.rate or self.waited < self.window:
            return
        if self.received < self.rate * self.waited:
            raise TimeoutError(
                f"the download fell below {self.rate:g} bytes/s "
                f"({self.received} bytes in {self.waited:.3g} s)"
            )
        self.waited, self.received = 0.0, 0


_Chunks = AsyncGenerator[tuple[int, bytes], None]


class _VideoBody:
    """One video body, fetched from its sources in order: the one download path.

    :meth:`chunks` yields ``(offset, chunk)``: where in the video each chunk
    belongs. Each chunk continues the one before, except that a
    ``restartable`` body may begin again at 0 (the file writer then starts its
    ``.part`` again); one that is not raises DownloadError instead.
    """

    def __init__(
        self,
        connection: GatewayConnection,
        sources: Sequence[str],
        *,
        provider: str,
        task_id: str,
        clock: Clock,
        restartable: bool,
    ) -> None:
        self._connection = connection
        self._sources = sources
        self._provider = provider
        self._task_id = task_id
        self._clock = clock
        self._restartable = restartable
        self.offset = 0  # bytes handed on so far
        self.content_length: int | None = None
        self.content_type = "video/mp4"
        self._validator: str | None = None  # ETag or Last-Modified of the bytes handed on
        self._boxes = BoxWalk()
        self._head = b""  # a fresh body's first bytes, held until the ftyp box is seen

    def _kept(self) -> int:
        """The bytes the next attempt will not fetch again."""
        return self.offset if self._validator else 0

    def _start_over(self, reason: str | AsyncVideoError) -> None:
        """Begin the body again at byte 0, or raise when bytes handed on cannot be taken back."""
        if self.offset and not self._restartable:
            raise DownloadError(
                f"the video broke off after {self.offset} bytes and cannot be continued "
                f"where it stopped: {reason}",
                task_id=self._task_id,
            ) from (reason if isinstance(reason, AsyncVideoError) else None)
        self.offset, self._validator, self._boxes = 0, None, BoxWalk()

    async def chunks(self) -> _Chunks:
        """The whole body, from the first source that has it.

        Raises:
            IntegrityError: the body is not an MP4 or its length is wrong.
            DownloadError: the server sent something that is not a video, the
                transfer kept failing (cut, stalled or too slow), or it broke
                off where a stream cannot continue it.
            APIError: the last source answered with an error status.
        """
        last = len(self._sources) - 1
        for index, url in enumerate(self._sources):
            try:
                async with contextlib.aclosing(self._from(url)) as pieces:
                    async for piece in pieces:
                        yield piece
                return
            except APIError as exc:
                if index == last or exc.status not in _LAPSED:
                    raise
                self._start_over(exc)
                logger.info(
                    "video URL of %s refused (%s); trying the content endpoint",
                    printable(self._task_id),
                    exc.status,
                )

    async def _from(self, url: str) -> _Chunks:
        """``url``'s body, tried again (resumed where possible) as the retry decision allows."""
        clock, retry = self._clock, self._connection.retry
        # Only the gateway's own content endpoint lags behind a success; a CDN that
        # says "not ready" falls back to that endpoint at once instead.
        not_ready_until = (
            clock.monotonic() + retry.policy.not_ready_window
            if self._connection.is_gateway_origin(url)
            else None
        )
        attempt = not_ready_waits = 0
        most_kept = self._kept()
        while True:
            try:
                async with contextlib.aclosing(self._attempt(url)) as pieces:
                    async for piece in pieces:
                        yield piece
                return
            except (TransportError, APIError) as exc:
                exc.task_id = self._task_id  # a body cut while reading does not know its task
                kept = self._kept()
                if self.offset and not kept:
                    self._start_over(exc)  # a stream stops here: no retry can continue it
                # Cut off, but further than ever: the budget is for attempts that
                # get nowhere (a slow or stalled one always counts).
                progressed = kept > most_kept and not isinstance(exc, TimeoutError)
                most_kept = max(most_kept, kept)
                wait = retry.after(
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

    async def _attempt(self, url: str) -> _Chunks:
        """One request for the body, continuing it where the server can."""
        headers = {"Accept-Encoding": "identity"}
        validator = self._validator if self.offset else None
        if validator:
            headers["Range"] = f"bytes={self.offset}-"
            headers["If-Range"] = validator
        # Its errors get the task id in _from, as every transport and API error here does.
        async with self._connection.stream(
            url, headers=headers, provider=self._provider
        ) as response:
            total = await self._begin(response, asked=bool(validator))
            policy = self._connection.retry.policy
            floor = _RateFloor(policy.min_download_rate, policy.download_rate_window)
            clock = self._clock
            asked_at = clock.monotonic()
            async for received in response.iter_bytes():
                floor.add(len(received), clock.monotonic() - asked_at)
                chunk = self._past_head(received) if not self.offset else received
                if chunk:
                    offset = self.offset
                    self._boxes.feed(chunk)
                    self.offset += len(chunk)
                    yield offset, chunk
                asked_at = clock.monotonic()
            self._check_end(total)

    async def _begin(self, response: HTTPResponse, *, asked: bool) -> int | None:
        """Check an answer before its body is read; the video's whole length if known."""
        content_type = response.headers.get("Content-Type", "").strip()
        if content_type.lower().startswith(_NOT_VIDEO_TYPES):
            body = await response.read(64 * 1024)
            raise DownloadError(
                f"expected a video, got {content_type.lower()}: {_error_summary(body)}",
                task_id=self._task_id,
            )
        encoded = _is_encoded(response)
        start = _body_start(response, self.offset, asked=asked)
        validator = (
            None
            if encoded
            else (response.headers.get("ETag") or response.headers.get("Last-Modified"))
        )
        if start and not self._continues(response, start, validator):
            start = None
        if start is None:
            self._validator = None  # ask for the whole body next time
            raise TransportError(
                "the server answered with a range that does not continue the file "
                f"({response.headers.get('Content-Range', 'no Content-Range')})"
            )
        if start != self.offset:
            self._start_over(f"the server sent it again from byte {start}")
        self._head = b""
        total = None if encoded else _expected_total(response, start)
        self._validator = validator
        if not start:
            self.content_length = total
            untyped = content_type.partition(";")[0].strip().lower() in _UNTYPED
            self.content_type = "video/mp4" if untyped else content_type
        return total

    def _continues(self, response: HTTPResponse, start: int, validator: str | None) -> bool:
        """Whether a range is the rest of the same version as the bytes handed on.

        A server that ignores ``If-Range`` answers under the new version's
        validator; one whose file changed under the same validator, with
        another total length.
        """
        if validator is not None and validator != self._validator:
            return False
        total = _expected_total(response, start)
        return total is None or self.content_length is None or total == self.content_length

    def _past_head(self, received: bytes) -> bytes:
        """Hold a fresh body's bytes until its first box header shows an MP4."""
        self._head += received
        if len(self._head) < _HEAD:
            return b""
        if not looks_like_mp4(self._head):
            raise IntegrityError(
                "the downloaded body is not an MP4 (no ftyp box)", task_id=self._task_id
            )
        head, self._head = self._head, b""
        return head

    def _check_end(self, total: int | None) -> None:
        """The body ended: whole, or a TransportError the retry decision resumes."""
        size = self.offset + len(self._head)
        if total is not None and size != total:
            raise TransportError(f"connection ended after {size} of {total} bytes")
        if size < _HEAD:
            raise IntegrityError(
                f"the downloaded body is {size} bytes, not a video", task_id=self._task_id
            )
        end = self._boxes.end()
        if end != size:
            raise TransportError(f"the body ended at byte {size} inside an MP4 box ending at {end}")
        if b"moov" not in self._boxes.kinds:
            # Whole as sent, and still no video: fetching it again would give the same bytes.
            raise IntegrityError(
                "the downloaded body is not a playable MP4 (no moov box)", task_id=self._task_id
            )


def _job_body(
    connection: GatewayConnection,
    job: Job,
    *,
    content_path: str | None,
    clock: Clock,
    variant: str | None,
    restartable: bool,
) -> _VideoBody:
    """A succeeded job's video body: its own URL first, then the content endpoint.

    ``content_path`` has ``{id}`` for the task id. A ``variant`` is asked of the
    content endpoint only.

    Raises:
        JobFailedError: the job failed or was cancelled.
        DownloadError: the job has not succeeded, has no video anywhere, or
            its URL cannot be used.
        VideoExpiredError: its ``expires_at`` has passed.
        ValidationError: its id cannot be put in the content endpoint's URL.
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
        segment = id_segment(job.id)
        if segment is None:
            raise ValidationError(f"task id {job.id!r} cannot name a task", field="task_id")
        content_url = connection.url(content_path.replace("{id}", segment))
        # A relay may give its own content endpoint as the video URL (new-api does for Sora).
        if content_url not in sources:
            sources.append(content_url)
    if not sources:
        raise DownloadError(f"job {job.id} has no video URL", task_id=job.id)
    if variant:
        sources[-1] = _with_query(sources[-1], {"variant": variant})
    return _VideoBody(
        connection,
        [_usable_url(connection, url, job.id) for url in sources],
        provider=job.provider,
        task_id=job.id,
        clock=clock,
        restartable=restartable,
    )


# -- to a file -----------------------------------------------------------------------------


@attrs.define
class _Part:
    """``<dest>.part`` while a download writes it."""

    path: Path
    task_id: str
    handle: BinaryIO | None = None

    def write(self, offset: int, chunk: bytes) -> None:
        # Each socket read goes straight to the page cache (cheaper inline than a
        # thread hop, and a drop loses nothing already received); the slow part,
        # fsync, runs in a worker thread.
        handle = self.handle
        # Each chunk continues the one before, except a body that begins again at 0.
        if handle is None or not offset:
            handle = self._open()
        try:
            handle.write(chunk)
        except OSError as exc:
            raise output_error(exc, self.path, "write", self.task_id) from exc

    def _open(self) -> BinaryIO:
        """The ``.part`` opened empty."""
        self.close()
        # Opening a local file takes microseconds; a thread hop costs more CPU.
        try:
            try:
                handle = self.path.open("wb")
            except FileNotFoundError:
                # The folder is missing only the first time; creating it here saves
                # a thread hop on every other download.
                self.path.parent.mkdir(parents=True, exist_ok=True)
                handle = self.path.open("wb")
        except OSError as exc:
            raise output_error(exc, self.path, "open", self.task_id) from exc
        self.handle = handle
        return handle

    def finish(self, dest: Path) -> None:
        """Flush, fsync and rename into place: blocking, for a worker thread."""
        handle = self.handle
        assert handle is not None  # a body that ends whole has handed on its 8-byte head
        try:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        except OSError as exc:
            raise output_error(exc, self.path, "write", self.task_id) from exc
        try:
            os.replace(self.path, dest)
        except OSError as exc:
            raise output_error(exc, dest, "save the video as", self.task_id) from exc

    def close(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.close()  # a failed flush still closes the file, then raises


async def download_job(
    connection: GatewayConnection,
    job: Job,
    dest: Path,
    *,
    content_path: str | None,
    clock: Clock,
    variant: str | None = None,
) -> int:
    """Download a succeeded job's video to ``dest``; returns the bytes written.

    The body of :class:`_VideoBody`, written to ``<dest>.part``, then fsynced and
    renamed into place.

    Raises:
        JobFailedError: the job failed or was cancelled.
        DownloadError: the job has not succeeded, has no video anywhere, or the
            body could not be fetched or did not verify.
        VideoExpiredError: its ``expires_at`` has passed (nothing is sent).
        OutputError: the file system refused the ``.part`` or ``dest``.
    """
    body = _job_body(
        connection,
        job,
        content_path=content_path,
        clock=clock,
        variant=variant,
        restartable=True,
    )
    part = _Part(dest.with_name(dest.name + ".part"), job.id)
    try:
        async with contextlib.aclosing(body.chunks()) as chunks:
            async for offset, chunk in chunks:
                part.write(offset, chunk)
        await anyio.to_thread.run_sync(part.finish, dest)
    except BaseException:
        # Keep a .part only while this call is retrying; a failed or cancelled
        # download leaves nothing behind that could pass for a video. Neither step
        # may hide the error that got us here: a full disk fails the close's flush
        # again, and a folder that is a file cannot hold a .part either.
        with contextlib.suppress(OSError):
            part.close()
        with anyio.CancelScope(shield=True), contextlib.suppress(OSError):
            await anyio.Path(part.path).unlink()  # no .part yet: suppressed like the rest
        raise
    return body.offset


# -- to the caller -------------------------------------------------------------------------


class VideoStream:
    """A succeeded job's video as an async iterator of ``bytes`` chunks.

    Made by :meth:`Client.open_video <asyncvideo.Client.open_video>`; use it as an
    async context manager. Entering checks the job (a video past ``expires_at``
    raises :class:`~asyncvideo.errors.VideoExpiredError` before any request),
    takes a download slot (``Limits.max_downloads``) and reads until the first
    MP4 box is in hand: an error page, a broken link or a body that is no MP4
    raises there, before a byte is yielded, and the headers a web response
    needs are known. The bytes come from the same path as
    :meth:`Client.download <asyncvideo.Client.download>`: the key only to the
    gateway's origin, a lapsed CDN link falls back to the content endpoint,
    and a dropped connection resumes with ``Range``/``If-Range`` within the
    same retry budget, so the chunks add up to one whole, verified file. Where
    the server cannot continue the same bytes, iteration raises
    :class:`~asyncvideo.errors.DownloadError`, as it does when the retry budget
    runs out or the whole body has no ``moov`` box (after its last chunk).

    Leaving the ``async with`` (a web client that went away), the end of the
    body, or an error releases the connection and the slot at once. Memory
    does not grow with the file: one network chunk is held at a time.

    Attributes:
        job: the job whose video this is.
        content_length: the video's size in bytes, or ``None`` when the server
            did not say (or sent it encoded).
        content_type: the server's ``Content-Type`` (``video/mp4`` when it gave
            none, or only ``application/octet-stream``).

    Example:
        An aiohttp handler that passes a clip on without a temporary file::

            async def clip(request: web.Request) -> web.StreamResponse:
                job = await client.get(request.match_info["ref"])
                async with client.open_video(job) as stream:
                    response = web.StreamResponse()
                    response.content_type = stream.content_type
                    response.content_length = stream.content_length
                    await response.prepare(request)
                    async for chunk in stream:
                        await response.write(chunk)
                    await response.write_eof()
                return response
    """

    def __init__(
        self,
        job: Job,
        *,
        connection: GatewayConnection,
        content_path: str | None,
        clock: Clock,
        slot: asyncio.Semaphore,
        variant: str | None = None,
    ) -> None:
        self.job = job
        self.content_length: int | None = None
        self.content_type = "video/mp4"
        self._connection = connection
        self._content_path = content_path
        self._clock = clock
        self._slot = slot
        self._variant = variant
        self._chunks: _Chunks | None = None
        self._first: bytes | None = None
        self._entered = False

    def __repr__(self) -> str:
        return f"<VideoStream of {self.job.id!r} ({self.content_length or '?'} bytes)>"

    async def __aenter__(self) -> VideoStream:
        if self._entered:
            raise RuntimeError("a VideoStream is entered once")
        self._entered = True
        # Before the slot: an expired video need not wait for one to find out.
        body = _job_body(
            self._connection,
            self.job,
            content_path=self._content_path,
            clock=self._clock,
            variant=self._variant,
            restartable=False,
        )
        self._chunks = _in_slot(self._slot, body)
        try:
            _, self._first = await anext(self._chunks)
        except BaseException:
            await self.aclose()
            raise
        self.content_length, self.content_type = body.content_length, body.content_type
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> VideoStream:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            chunk, self._first = self._first, None
            return chunk
        if self._chunks is None:
            if not self._entered:
                raise RuntimeError("use `async with client.open_video(job) as stream`")
            raise StopAsyncIteration
        try:
            _, chunk = await anext(self._chunks)
        except BaseException:  # the end, an error or a cancel: nothing more to hold open
            await self.aclose()
            raise
        return chunk

    async def aclose(self) -> None:
        """Release the connection and the download slot (safe to call twice)."""
        chunks, self._chunks, self._first = self._chunks, None, None
        if chunks is not None:
            await chunks.aclose()


async def _in_slot(slot: asyncio.Semaphore, body: _VideoBody) -> _Chunks:
    """``body``'s chunks, holding a download slot from the first until they end.

    The slot is taken and given back inside this generator, which holds no
    reference to its :class:`VideoStream`: a stream a framework drops without
    closing it (Starlette after a client disconnect) is garbage at once, and
    the event loop's finalizer for async generators closes this one, which
    releases the connection and the slot.
    """
    async with slot, contextlib.aclosing(body.chunks()) as chunks:
        async for piece in chunks:
            yield piece


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
    # "bytes <first>-<last>/<total>": any other unit names something else than bytes
    unit, _, spec = response.headers.get("Content-Range", "").strip().partition(" ")
    start = spec.partition("-")[0].strip()
    if unit.lower() == "bytes" and start.isdigit() and int(start) in (0, offset):
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


publish(VideoStream)
