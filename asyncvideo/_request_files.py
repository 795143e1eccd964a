"""Prompt files: one request per line, read lazily, for ``generate_many``.

Three formats, one line each:

- text: the line is the prompt;
- JSONL: a JSON object of :class:`~asyncvideo.VideoRequest` fields;
- CSV: a header row naming fields, then one row per request.

Blank lines and lines starting with ``#`` are skipped in all three, so a
commented prompt file never turns its comments into paid clips.

Lines are read in a worker thread, a bounded chunk at a time: a slow disk or
pipe never stalls the event loop (and the polls of every job in flight), and a
100,000-line file is never all in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import difflib
import json
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import PurePath
from types import TracebackType
from typing import IO, Any, Literal, TypeAlias

import anyio
import attrs

from ._models import VideoRequest
from .errors import ValidationError

__all__ = ["RequestFile", "read_requests"]

Format: TypeAlias = Literal["auto", "text", "jsonl", "csv"]
InvalidLineHandler: TypeAlias = Callable[[ValidationError], object]

_FIELDS = frozenset(field.name for field in attrs.fields(VideoRequest))
_SUFFIX_FORMATS: Mapping[str, Format] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
# One worker-thread hop reads up to this many lines or bytes, whichever comes first:
# few hops for a file of short prompts, bounded memory for one of inline images.
_CHUNK_LINES = 256
_CHUNK_BYTES = 256 * 1024


def read_requests(
    path: str | os.PathLike[str] | IO[str] | IO[bytes],
    *,
    model: str | None = None,
    format: Format = "auto",
    on_invalid: InvalidLineHandler | None = None,
    **defaults: Any,
) -> RequestFile:
    """The requests of a prompt file, read lazily; pass them straight to ``generate_many``.

    Blank lines and lines starting with ``#`` are skipped. The format is, with
    ``format="auto"``, taken from the suffix (``.jsonl``/``.ndjson``, ``.csv``,
    anything else is text); a stream without such a name is JSONL if its first
    request line starts with ``{``, text otherwise.

    - text: each line is a prompt, with ``model`` and ``defaults`` for the rest;
    - JSONL: each line is an object of ``VideoRequest`` fields; its fields win
      over ``model`` and ``defaults``;
    - CSV: the first row is a header naming fields (it must have ``prompt``);
      an empty cell takes the default. Quoted cells may hold commas but not
      line breaks (one request per line keeps line numbers exact).

    A bad line raises :class:`~asyncvideo.errors.ValidationError` naming the
    file and line, e.g. ``prompts.jsonl, line 7: not valid JSON (...)``. Given
    to ``generate_many``, that stops the reading: the batch finishes the
    requests it already started (they may be paid for), yields their
    outcomes, then raises the error; the lines after it are never sent. Pass
    ``on_invalid`` to skip bad lines instead: it is called with each error and
    reading goes on. A CSV header that cannot be read always raises, since no
    row after it could be.

    The file is opened on the first read and closed at its end, on an error,
    or on :meth:`RequestFile.aclose` (``async with`` closes it early, e.g. when
    a batch stops before the end). A stream that is passed in is read, not closed.

    Args:
        path: the file, or an open text or binary stream such as ``sys.stdin``.
        model: the model of every request that does not name one.
        format: ``"auto"``, ``"text"``, ``"jsonl"`` or ``"csv"``.
        on_invalid: called with the ``ValidationError`` of each bad line, which
            is then skipped; without it the first bad line raises.
        **defaults: other ``VideoRequest`` fields every request starts from,
            e.g. ``seconds=5``. Checked now: a bad default raises at once.

    Example:
        >>> async with Client() as client:  # doctest: +SKIP
        ...     requests = asyncvideo.read_requests("prompts.txt", model="viduq1")
        ...     async for outcome in client.generate_many(requests, output_dir="videos"):
        ...         print(outcome.index, outcome.path or outcome.error)
    """
    if model is not None:
        defaults["model"] = model
    _check_defaults(defaults)
    return RequestFile(path, format=format, on_invalid=on_invalid, defaults=defaults)


def _check_defaults(defaults: Mapping[str, Any]) -> None:
    unknown = sorted(set(defaults) - _FIELDS)
    if unknown:
        raise ValidationError(f"unknown VideoRequest field {_unknown_names(unknown)}")
    # Shared by every line: a bad one is one error now, not the same error on each line.
    VideoRequest.from_fields({"prompt": "-", **defaults})


def _unknown_names(unknown: list[str]) -> str:
    guess = difflib.get_close_matches(unknown[0], _FIELDS, n=1)
    hint = f" (did you mean {guess[0]!r}?)" if guess else ""
    return f"{', '.join(map(repr, unknown))}{hint}"


def _format_of(name: str | None, requested: Format) -> Format:
    if requested != "auto" or name is None or name.startswith("<"):
        return requested  # "<stdin>" and friends: decided by the first request line
    return _SUFFIX_FORMATS.get(PurePath(name).suffix.lower(), "text")


class RequestFile:
    """The requests of one prompt file: an async iterator, and an async context manager.

    Made by :func:`~asyncvideo.read_requests`.

    Attributes:
        name: the file's name as given (``"<stdin>"`` for standard input).
        format: ``"text"``, ``"jsonl"`` or ``"csv"``; ``"auto"`` until the
            first request line of a stream without a telling name is read.
        line: the number of the line read last (1-based; 0 before the first):
            after a request is returned, its line; in ``on_invalid``, the bad one.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | IO[str] | IO[bytes],
        *,
        format: Format,
        on_invalid: InvalidLineHandler | None,
        defaults: Mapping[str, Any],
    ) -> None:
        if isinstance(path, str | os.PathLike):
            self._path: str | None = os.fspath(path)
            self._stream: IO[str] | IO[bytes] | None = None
            self.name = self._path
        else:
            self._path = None
            self._stream = path
            name = getattr(path, "name", None)
            self.name = name if isinstance(name, str) else "<stream>"
        self.format: Format = _format_of(self.name, format)
        self.line = 0
        self._on_invalid = on_invalid
        self._defaults = dict(defaults)
        self._buffer: deque[str | bytes] = deque()
        self._eof = False
        self._closed = False
        self._header: list[str] | None = None
        self._pipe: _PipeFeed | None = None

    # -- the async iterator ----------------------------------------------------------------------

    def __aiter__(self) -> RequestFile:
        return self

    async def __anext__(self) -> VideoRequest:
        try:
            while True:
                text = await self._next_line()
                if text is None:
                    await self.aclose()
                    raise StopAsyncIteration
                if not text or text.startswith("#"):
                    continue
                request = self._parse_or_report(text)
                if request is not None:
                    return request
        except (Exception, anyio.get_cancelled_exc_class()):
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop reading and close the file (if it was opened here). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._eof = True
        self._buffer.clear()
        if self._pipe is not None:
            self._pipe.close()
        if self._path is not None and self._stream is not None:
            self._stream.close()  # read-only: nothing to flush, so no need for a thread

    async def __aenter__(self) -> RequestFile:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- reading ---------------------------------------------------------------------------------

    async def _next_line(self) -> str | None:
        """The next line, stripped and decoded; None at the end of the file."""
        if not self._buffer and not self._eof:
            await self._fill()
        if not self._buffer:
            return None
        raw = self._buffer.popleft()
        self.line += 1
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._invalid(f"not UTF-8 text (byte {exc.start + 1} of the line)")
                return ""  # skipped, like a blank line
        if self.line == 1:
            # Editors on Windows like to start files with a byte-order mark.
            raw = raw.removeprefix("\ufeff")
        return raw.strip()

    async def _fill(self) -> None:
        if self._closed:
            return
        if self._stream is None:
            assert self._path is not None
            self._stream = await anyio.to_thread.run_sync(open, self._path, "rb")
        if self._pipe is None and not _seekable(self._stream):
            self._pipe = _PipeFeed(self._stream)
        if self._pipe is not None:
            chunk = await self._pipe.chunk()
        else:
            chunk = await anyio.to_thread.run_sync(
                _read_chunk, self._stream, abandon_on_cancel=True
            )
        if not chunk:
            self._eof = True
        self._buffer.extend(chunk)

    # -- parsing ---------------------------------------------------------------------------------

    def _parse_or_report(self, text: str) -> VideoRequest | None:
        """The line's request; None for a CSV header or a bad line given to ``on_invalid``."""
        try:
            return self._parse(text)
        except ValidationError as exc:
            # A CSV file whose header is bad has no row that could be read.
            unreadable = self.format == "csv" and self._header is None
            if self._on_invalid is None or unreadable:
                raise
            self._on_invalid(exc)
            return None

    def _parse(self, text: str) -> VideoRequest | None:
        if self.format == "auto":
            self.format = "jsonl" if text.startswith("{") else "text"
        if self.format == "text":
            return self._request({"prompt": text})
        if self.format == "jsonl":
            return self._request(self._json_fields(text))
        if self._header is None:
            self._header = self._csv_header(text)
            return None  # the header row names the fields; it is not a request
        return self._request(self._csv_fields(text, self._header))

    def _request(self, fields: Mapping[str, Any]) -> VideoRequest:
        try:
            return VideoRequest(**{**self._defaults, **fields})
        except ValidationError as exc:
            raise ValidationError(self._where(str(exc)), field=exc.field) from None
        except TypeError as exc:  # a field of the wrong shape, e.g. "extra": 3
            reason = str(exc).removeprefix("VideoRequest.__init__() ")
            raise ValidationError(self._where(reason)) from None

    def _json_fields(self, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._error(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise self._error("not valid JSON (nested too deeply)") from None
        if not isinstance(data, dict):
            raise self._error(f"expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise self._error(f"unknown field {_unknown_names(unknown)}")
        return data

    def _cells(self, text: str) -> list[str]:
        try:
            return _csv_cells(text)
        except csv.Error:
            raise self._error(
                "a quoted CSV cell does not end on this line; put each request on one "
                "line (or use JSONL for prompts with line breaks)"
            ) from None

    def _csv_header(self, text: str) -> list[str]:
        names = [name.strip().lower() for name in self._cells(text)]
        unknown = sorted(set(names) - _FIELDS)
        if unknown:
            raise self._error(f"the CSV header names unknown field {_unknown_names(unknown)}")
        if "prompt" not in names:
            raise self._error(
                "a CSV file starts with a header row naming VideoRequest fields, with a "
                f"'prompt' column (e.g. prompt,model,seconds); got {text!r}"
            )
        return names

    def _csv_fields(self, text: str, header: list[str]) -> dict[str, Any]:
        cells = self._cells(text)
        if len(cells) != len(header):
            raise self._error(
                f"expected {len(header)} CSV cells as in the header, got {len(cells)}"
            )
        fields: dict[str, Any] = {}
        for name, cell in zip(header, cells, strict=True):
            if cell.strip():  # an empty cell takes the default
                fields[name] = self._csv_value(name, cell.strip())
        return fields

    def _csv_value(self, name: str, cell: str) -> object:
        convert = _CSV_CONVERTERS.get(name)
        if convert is None:
            return cell
        try:
            return convert(cell)
        except ValueError:
            raise self._error(f"{name} cannot be {cell!r}") from None

    # -- errors ----------------------------------------------------------------------------------

    def _where(self, reason: str) -> str:
        return f"{self.name}, line {self.line}: {reason}"

    def _error(self, reason: str) -> ValidationError:
        return ValidationError(self._where(reason))

    def _invalid(self, reason: str) -> None:
        error = self._error(reason)
        if self._on_invalid is None:
            raise error
        self._on_invalid(error)


def _read_chunk(stream: IO[str] | IO[bytes]) -> list[str | bytes]:
    """Up to ``_CHUNK_LINES`` lines or about ``_CHUNK_BYTES``; empty at the end. In a thread."""
    lines: list[str | bytes] = []
    size = 0
    while len(lines) < _CHUNK_LINES and size < _CHUNK_BYTES:
        line = stream.readline()
        if not line:
            break
        lines.append(line)
        size += len(line)
    return lines


def _seekable(stream: IO[str] | IO[bytes]) -> bool:
    try:
        return stream.seekable()
    except (AttributeError, ValueError, OSError):
        return False


class _PipeFeed:
    """The lines of a pipe or terminal, read ahead a little in a daemon thread of its own.

    A file on disk is read in anyio's worker threads, a chunk per hop. A pipe
    or terminal cannot be: a chunk would wait for lines a slow producer has not
    written yet (holding back the ones it has), and a read of a quiet stdin
    cannot be interrupted, so after Ctrl-C anyio's worker thread (not a daemon)
    would keep the process alive until the next line. This thread hands over
    each line as it comes, stops ``buffer`` lines ahead, and dies with the process.
    """

    def __init__(self, stream: IO[str] | IO[bytes], *, buffer: int = _CHUNK_LINES) -> None:
        self._stream = stream
        self._room = threading.Semaphore(buffer)
        self._queue: asyncio.Queue[str | bytes | Exception | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._end: Exception | None = None  # set once the thread has said its last
        threading.Thread(target=self._read, name="asyncvideo-requests", daemon=True).start()

    def _read(self) -> None:
        try:
            while line := self._stream.readline():
                self._room.acquire()
                if self._closed:
                    return
                self._deliver(line)
        except Exception as exc:  # a closed stream, a read error: raised in the loop
            self._deliver(exc)
        else:
            self._deliver(None)

    def _deliver(self, item: str | bytes | Exception | None) -> None:
        # RuntimeError: the loop has closed, nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def chunk(self) -> list[str | bytes]:
        """The lines that have arrived (waiting for at least one); empty at the end."""
        lines: list[str | bytes] = []
        while self._end is None:
            item = await self._queue.get() if not lines else self._queue.get_nowait()
            self._room.release()
            if item is None or isinstance(item, Exception):
                self._end = item or _EndOfFile()
            else:
                lines.append(item)
            if self._queue.empty():
                break
        if not lines and not isinstance(self._end, _EndOfFile | None):
            raise self._end  # a read error, once the lines before it are handed out
        return lines

    def close(self) -> None:
        self._closed = True
        self._room.release()  # wake the reader if it waits for room, so it sees _closed


class _EndOfFile(Exception):
    """The end of a pipe, as :class:`_PipeFeed` records it (never raised)."""


def _csv_cells(text: str) -> list[str]:
    # Strict: a quoted cell left open at the end of the line (a prompt spanning
    # lines) is an error, never a prompt cut short and paid for.
    return next(csv.reader([text], strict=True), [])


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def _boolean(text: str) -> bool:
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    try:
        return words[text.lower()]
    except KeyError:
        raise ValueError(text) from None


def _json_object(text: str) -> dict[str, object]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(text)
    return value


# CSV cells are strings; these fields are not. Everything else is taken as written.
_CSV_CONVERTERS: Mapping[str, Callable[[str], object]] = {
    "seconds": _number,
    "fps": int,
    "seed": int,
    "watermark": _boolean,
    "prompt_extend": _boolean,
    "audio": _boolean,
    "extra": _json_object,
}
