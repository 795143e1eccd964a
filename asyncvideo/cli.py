"""The ``asyncvideo`` command.

Verbs::

    asyncvideo batch PROMPTS_FILE [--model M] [--seconds S] [--size WxH] [--output-dir DIR]
                     [--jobs N] [--timeout T] [--journal FILE] [--format auto|text|jsonl]
                     [--json]
    asyncvideo generate PROMPT [--model M] [--seconds S] [--size WxH] [--image PATH_OR_URL]
                        [--output PATH] [--timeout T]
    asyncvideo status TASK_ID --model M [--json]
    asyncvideo download TASK_ID --model M [--output PATH] [--wait]
    asyncvideo simulate [--port 8000] [--time-scale 0.05] [--failure-rate P]
    asyncvideo models [--json]

Every verb that talks to a gateway takes ``--simulate`` (an in-process
FakeGateway on a random loopback port), or ``--base-url``/``--gateway``. The API
key comes only from ``$ASYNCVIDEO_API_KEY``: a flag would leave it in shell history.

Exit codes: 0 all succeeded, 1 something failed, 2 usage or configuration error,
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import importlib.util
import json
import logging
import os
import sys
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import attrs

from ._client import Client
from ._events import (
    DownloadedEvent,
    Event,
    FailedEvent,
    ProgressEvent,
    StateChangedEvent,
    SubmittedEvent,
)
from ._models import Job, Limits, Outcome, VideoRequest, parse_size
from ._polling import PollPolicy, RetryPolicy
from ._profiles import GATEWAYS
from ._states import JobState
from ._version import __version__
from .errors import (
    AsyncVideoError,
    AuthenticationError,
    ConfigurationError,
    CreateOutcomeUnknown,
    JobTimeoutError,
    ValidationError,
)
from .providers import KNOWN_MODELS

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Simulated clips take 20-40 s; at this scale about 1-2 s, quick but long enough to watch.
SIMULATE_TIME_SCALE = 0.05

# Errors that mean "fix the command or the environment", not "the gateway failed a job".
_USAGE_ERRORS: tuple[type[AsyncVideoError], ...] = (
    ConfigurationError,
    ValidationError,
    AuthenticationError,
)
_REQUEST_FIELDS = frozenset(field.name for field in attrs.fields(VideoRequest))
_JSONL_SUFFIXES = (".jsonl", ".ndjson")


class _UsageError(Exception):
    """A mistake in the command line or environment (exit code 2)."""


# -- argument parsing ---------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value


def _size(text: str) -> str:
    if parse_size(text) is None:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x720, got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``asyncvideo`` command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")

    gateway = argparse.ArgumentParser(add_help=False)
    group = gateway.add_argument_group("gateway")
    group.add_argument(
        "--simulate",
        action="store_true",
        help="run against a built-in FakeGateway on loopback (no key, no cost)",
    )
    group.add_argument(
        "--time-scale",
        type=_positive_float,
        metavar="F",
        help=f"with --simulate: simulated time factor (default {SIMULATE_TIME_SCALE})",
    )
    group.add_argument(
        "--base-url", metavar="URL", help="gateway URL (default: $ASYNCVIDEO_BASE_URL)"
    )
    group.add_argument(
        "--gateway",
        choices=sorted(GATEWAYS),
        default="default",
        help="endpoint layout of the gateway (default: default)",
    )

    request = argparse.ArgumentParser(add_help=False)
    group = request.add_argument_group("request")
    group.add_argument("--model", metavar="M", help="model name (see `asyncvideo models`)")
    group.add_argument("--seconds", type=_positive_float, metavar="S", help="clip length")
    group.add_argument("--size", type=_size, metavar="WxH", help="frame size, e.g. 1280x720")

    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of text")

    parser = argparse.ArgumentParser(
        prog="asyncvideo",
        description="Generate AI videos through an asynchronous video-generation gateway.",
        epilog=(
            "The API key is read from ASYNCVIDEO_API_KEY and the gateway from "
            "ASYNCVIDEO_BASE_URL; try any verb with --simulate first."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    batch = verbs.add_parser(
        "batch",
        parents=[common, gateway, request, as_json],
        help="generate one clip per line of a prompt file",
        description=(
            "Generate one clip per prompt. PROMPTS_FILE has one prompt per line (blank "
            "lines and # comments are skipped), or is a .jsonl file of VideoRequest "
            'objects such as {"prompt": "...", "model": "kling-v1", "seconds": 5}; '
            "'-' reads standard input. --model/--seconds/--size are defaults for JSON lines."
        ),
    )
    batch.add_argument("prompts_file", metavar="PROMPTS_FILE")
    batch.add_argument(
        "--output-dir", default="videos", metavar="DIR", help="where clips go (default: videos)"
    )
    batch.add_argument(
        "--jobs", type=_positive_int, metavar="N", help="at most N jobs in flight (default 200)"
    )
    batch.add_argument(
        "--timeout", type=_positive_float, metavar="T", help="per-job deadline in seconds"
    )
    batch.add_argument(
        "--journal",
        metavar="FILE",
        help="SQLite journal of task ids; run the same batch again with it to resume "
        "without creating (and paying for) any clip twice",
    )
    batch.add_argument(
        "--format",
        choices=("auto", "text", "jsonl"),
        default="auto",
        help="input format (auto: by file suffix; for '-' by the first line)",
    )

    generate = verbs.add_parser(
        "generate",
        parents=[common, gateway, request],
        help="generate one clip and print its path",
        description="Submit one prompt, wait for the clip, download it and print its path.",
    )
    generate.add_argument("prompt", metavar="PROMPT")
    generate.add_argument("--image", metavar="PATH_OR_URL", help="first frame / reference image")
    generate.add_argument(
        "--output",
        default=".",
        metavar="PATH",
        help="file or folder to save to (default: ./<task id>.mp4)",
    )
    generate.add_argument(
        "--timeout", type=_positive_float, metavar="T", help="deadline in seconds"
    )

    status = verbs.add_parser(
        "status",
        parents=[common, gateway, as_json],
        help="show a task's state, progress and video URL",
    )
    status.add_argument("task_id", metavar="TASK_ID")
    status.add_argument("--model", required=True, metavar="M", help="the task's model")

    download = verbs.add_parser(
        "download",
        parents=[common, gateway],
        help="download a finished task's video",
    )
    download.add_argument("task_id", metavar="TASK_ID")
    download.add_argument("--model", required=True, metavar="M", help="the task's model")
    download.add_argument(
        "--output",
        default=".",
        metavar="PATH",
        help="file or folder to save to (default: ./<task id>.mp4)",
    )
    download.add_argument(
        "--wait", action="store_true", help="wait for the task if it is still running"
    )

    simulate = verbs.add_parser(
        "simulate",
        parents=[common],
        help="run the FakeGateway in the foreground until Ctrl-C",
    )
    simulate.add_argument(
        "--port", type=_port, default=8000, help="port on 127.0.0.1 (default 8000; 0: any)"
    )
    simulate.add_argument(
        "--time-scale",
        type=_positive_float,
        default=SIMULATE_TIME_SCALE,
        metavar="F",
        help=f"simulated time factor (default {SIMULATE_TIME_SCALE})",
    )
    simulate.add_argument(
        "--failure-rate",
        type=_fraction,
        default=0.0,
        metavar="P",
        help="fraction of jobs that end failed (default 0)",
    )

    verbs.add_parser(
        "models", parents=[common, as_json], help="list the known models and their providers"
    )
    return parser


# -- entry point --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``asyncvideo`` command; returns the exit code.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Example:
        >>> main(["models"])  # doctest: +SKIP
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    out = _Output(
        json=getattr(args, "json", False),
        secret=os.environ.get("ASYNCVIDEO_API_KEY") or None,
    )
    handlers: dict[str, Callable[[argparse.Namespace, _Output], int]] = {
        "batch": _cmd_batch,
        "generate": _run_async(_generate),
        "status": _run_async(_status),
        "download": _run_async(_download),
        "simulate": _cmd_simulate,
        "models": _cmd_models,
    }
    with _logging_to_stderr(args.verbose, out):
        try:
            return handlers[args.verb](args, out)
        except _UsageError as exc:
            out.error(str(exc))
            return EXIT_USAGE
        except AsyncVideoError as exc:
            out.error(_describe(exc))
            for note in getattr(exc, "__notes__", ()):
                out.note(note)
            return EXIT_USAGE if isinstance(exc, _USAGE_ERRORS) else EXIT_FAILED
        except KeyboardInterrupt:
            out.note("interrupted")
            return EXIT_INTERRUPTED


def _run_async(
    verb: Callable[[argparse.Namespace, _Output], Awaitable[int]],
) -> Callable[[argparse.Namespace, _Output], int]:
    def run(args: argparse.Namespace, out: _Output) -> int:
        _check_gateway_args(args)
        return anyio.run(verb, args, out, backend="asyncio")

    return run


@contextlib.contextmanager
def _logging_to_stderr(verbosity: int, out: _Output) -> Iterator[None]:
    # Installed per call and removed after, so main() can run many times in one process.
    logger = logging.getLogger("asyncvideo")
    handler = _StderrHandler(out)
    handler.setFormatter(logging.Formatter("asyncvideo: %(levelname)s: %(message)s"))
    saved = logger.level, logger.propagate
    logger.setLevel(logging.WARNING - 10 * min(verbosity, 2))
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (rich and pytest swap it)."""

    def __init__(self, out: _Output) -> None:
        super().__init__()
        self._out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._out.note(self.format(record))
        except Exception:
            self.handleError(record)


# -- output -------------------------------------------------------------------------------------


class _Output:
    """Where the command writes: plain lines, JSON lines or a rich console.

    Every message passes :meth:`redact`, so the API key cannot reach the
    terminal even if some message were to carry it.
    """

    def __init__(self, *, json: bool, secret: str | None) -> None:
        self.json = json
        self._secret = secret
        self._stdout_broken = False
        self.console: Console | None = None
        if not json and _isatty(sys.stdout) and importlib.util.find_spec("rich") is not None:
            from rich.console import Console

            self.console = Console(highlight=False)

    def redact(self, text: str) -> str:
        if self._secret and len(self._secret) >= 4:
            text = text.replace(self._secret, "***")
        return text

    def line(self, text: str) -> None:
        """A line of the command's result on stdout."""
        if self._stdout_broken:
            return
        try:
            if self.console is not None:
                self.console.print(self.redact(text), markup=False)
            else:
                print(self.redact(text), flush=True)
        except BrokenPipeError:
            # The reader went away (`| head`); paid-for jobs still finish and land on disk.
            self._stdout_broken = True
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())

    def record(self, data: Mapping[str, object]) -> None:
        """One JSON object on one line of stdout."""
        self.line(json.dumps(data, ensure_ascii=False, default=str))

    def note(self, text: str) -> None:
        """A message for the person at the terminal, on stderr."""
        print(self.redact(text), file=sys.stderr, flush=True)

    def error(self, text: str) -> None:
        self.note(f"asyncvideo: error: {text}")

    @contextlib.contextmanager
    def spinner(self, text: str) -> Iterator[None]:
        if self.console is None:
            yield
            return
        with self.console.status(text):
            yield


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _job_record(job: Job) -> dict[str, object]:
    return {
        "id": job.id,
        "model": job.model,
        "provider": job.provider,
        "state": job.state.value,
        "native_status": job.native_status,
        "progress": job.progress,
        "video_url": job.video_url,
        "created_at": _iso(job.created_at),
        "completed_at": _iso(job.completed_at),
        "expires_at": _iso(job.expires_at),
        "error": None if job.error is None else attrs.asdict(job.error),
    }


# -- connecting ---------------------------------------------------------------------------------


def _check_gateway_args(args: argparse.Namespace) -> None:
    """Refuse contradictory or missing gateway settings before any loop or server starts."""
    if args.simulate:
        if args.base_url:
            raise _UsageError("--simulate and --base-url exclude each other")
        return
    if args.time_scale is not None:
        raise _UsageError("--time-scale needs --simulate")
    if not os.environ.get("ASYNCVIDEO_API_KEY"):
        raise _UsageError(
            "set ASYNCVIDEO_API_KEY (it is not taken as a flag, to keep it out of shell "
            "history), or try --simulate"
        )
    if not (args.base_url or os.environ.get("ASYNCVIDEO_BASE_URL")):
        raise _UsageError("set ASYNCVIDEO_BASE_URL or pass --base-url, or try --simulate")


@contextlib.asynccontextmanager
async def _connect(
    args: argparse.Namespace, *, limits: Limits | None = None
) -> AsyncIterator[Client]:
    """A client for the configured gateway, or for a FakeGateway started for this run."""
    if not args.simulate:
        async with Client(base_url=args.base_url, gateway=args.gateway, limits=limits) as client:
            yield client
        return
    from .testing import FakeGateway

    scale: float = args.time_scale or SIMULATE_TIME_SCALE
    async with (
        FakeGateway(time_scale=scale) as fake,
        Client(
            api_key=fake.api_key,
            base_url=fake.url,
            gateway=args.gateway,
            limits=limits,
            # The simulator runs `scale` times faster, so the client polls that much sooner.
            poll_policy=PollPolicy().scaled(scale),
            retry_policy=RetryPolicy().scaled(scale),
        ) as client,
    ):
        yield client


def _request_defaults(args: argparse.Namespace) -> dict[str, Any]:
    given = {"model": args.model, "seconds": args.seconds, "size": args.size}
    return {name: value for name, value in given.items() if value is not None}


# -- batch --------------------------------------------------------------------------------------


@attrs.define
class _Source:
    stream: TextIO
    name: str
    format: str  # "text", "jsonl", or "auto" (decided by the first request line)
    owned: bool  # opened by us, so closed by us


def _open_source(args: argparse.Namespace) -> _Source:
    name: str = args.prompts_file
    fmt: str = args.format
    if name == "-":
        return _Source(stream=sys.stdin, name="<stdin>", format=fmt, owned=False)
    if fmt == "auto":
        fmt = "jsonl" if name.lower().endswith(_JSONL_SUFFIXES) else "text"
    try:
        # utf-8-sig: editors on Windows like to start files with a byte-order mark.
        stream = open(name, encoding="utf-8-sig")  # noqa: SIM115 - closed by _cmd_batch
    except OSError as exc:
        raise _UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
    return _Source(stream=stream, name=name, format=fmt, owned=True)


def _count_requests(path: str) -> int:
    """Request lines in a file, for the progress bar's total (one streaming pass)."""
    with open(path, encoding="utf-8-sig", errors="replace") as stream:
        return sum(1 for line in stream if (text := line.strip()) and not text.startswith("#"))


def _cmd_batch(args: argparse.Namespace, out: _Output) -> int:
    _check_gateway_args(args)
    source = _open_source(args)
    try:
        total = _count_requests(source.name) if source.owned and out.console else None
        return anyio.run(_batch, args, out, source, total, backend="asyncio")
    finally:
        if source.owned:
            source.stream.close()


def _request_from_line(text: str, fmt: str, defaults: Mapping[str, Any]) -> VideoRequest:
    if fmt == "text":
        return VideoRequest(prompt=text, **defaults)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValidationError(f"expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _REQUEST_FIELDS)
    if unknown:
        guess = difflib.get_close_matches(unknown[0], _REQUEST_FIELDS, n=1)
        hint = f" (did you mean {guess[0]!r}?)" if guess else ""
        raise ValidationError(f"unknown field {', '.join(map(repr, unknown))}{hint}")
    try:
        return VideoRequest(**{**defaults, **data})
    except TypeError as exc:  # a missing prompt, or a field of the wrong shape
        raise ValidationError(str(exc).removeprefix("VideoRequest.__init__() ")) from None


class _LineFeed:
    """The lines of a text stream, read ahead a little in a daemon thread.

    Reading in a thread keeps a slow pipe from stalling the event loop (and the
    polls of every job in flight); the buffer is bounded, so a huge file is
    never all in memory. A daemon thread rather than anyio's worker pool: a
    read of a quiet stdin cannot be interrupted, and after Ctrl-C it must not
    keep the process alive.
    """

    def __init__(self, stream: TextIO, *, buffer: int = 256) -> None:
        self._stream = stream
        self._room = threading.Semaphore(buffer)
        self._queue: asyncio.Queue[str | Exception | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._closed = False
        threading.Thread(target=self._read, name="asyncvideo-prompts", daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self._stream:
                self._room.acquire()
                if self._closed:
                    return
                self._deliver(line)
        except Exception as exc:  # bad encoding, closed stream: report it in the loop
            self._deliver(exc)
        else:
            self._deliver(None)

    def _deliver(self, item: str | Exception | None) -> None:
        # RuntimeError: the loop has closed, nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def lines(self) -> AsyncIterator[str]:
        while True:
            item = await self._queue.get()
            self._room.release()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def close(self) -> None:
        self._closed = True
        self._room.release()  # wake the reader if it waits for room, so it sees _closed


async def _read_requests(
    source: _Source, defaults: Mapping[str, Any], view: _BatchView
) -> AsyncGenerator[VideoRequest, None]:
    """Requests from ``source`` one by one; bad lines go to ``view`` and are skipped."""
    fmt = source.format
    feed = _LineFeed(source.stream)
    number = 0
    try:
        async for line in feed.lines():
            number += 1
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if fmt == "auto":
                fmt = "jsonl" if text.startswith("{") else "text"
            try:
                request = _request_from_line(text, fmt, defaults)
            except ValidationError as exc:
                view.bad_line(number, exc)
                continue
            view.line_submitted(number)
            yield request
    except (OSError, ValueError) as exc:
        # Stop feeding but let the jobs already in flight finish: they are paid for.
        view.read_failed(source.name, number + 1, exc)
    finally:
        feed.close()


async def _batch(args: argparse.Namespace, out: _Output, source: _Source, total: int | None) -> int:
    defaults = _request_defaults(args)
    output_dir = Path(args.output_dir)
    limits = Limits(max_active_jobs=args.jobs) if args.jobs else None
    async with _connect(args, limits=limits) as client:
        if source.format == "text":
            # Every line shares these settings: a combination the model refuses is a
            # usage error now, not N identical failures later.
            client.prepare(prompt="-", **defaults)
        view = _BatchView(out, total=total, output_dir=output_dir, simulated=args.simulate)
        with view:
            # Both closed here, not by the garbage collector: the batch cancels and waits
            # for its own tasks while the client is still open.
            async with (
                contextlib.aclosing(_read_requests(source, defaults, view)) as requests,
                contextlib.aclosing(
                    client.generate_many(
                        requests,
                        output_dir=output_dir,
                        on_event=view.on_event,
                        timeout=args.timeout,
                        journal=args.journal,
                    )
                ) as outcomes,
            ):
                try:
                    async for outcome in outcomes:
                        view.outcome(outcome)
                except anyio.get_cancelled_exc_class():
                    view.interrupted()
                    raise
                except AsyncVideoError as exc:
                    view.stopped(exc)
                    raise
    return EXIT_OK if view.failed == 0 and not view.read_error else EXIT_FAILED


class _BatchView:
    """Counts a batch's events and outcomes and shows them: a rich bar, or a line each."""

    def __init__(
        self, out: _Output, *, total: int | None, output_dir: Path, simulated: bool
    ) -> None:
        self.out = out
        self.simulated = simulated
        self.total = total
        self.output_dir = output_dir
        self.started = time.monotonic()
        self.succeeded = 0
        self.failed = 0
        self.read_error = False
        # Live jobs by batch index: for the bar's counts, and so an interrupted batch can
        # still say which paid-for tasks are on the gateway.
        self.active: dict[int, Job] = {}
        self.submitted = 0
        self.downloaded = 0
        # Batch index -> line number, kept only while the request is in flight.
        self._lines: dict[int, int] = {}
        self._next_index = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    # -- lifecycle

    def __enter__(self) -> _BatchView:
        if self.out.console is not None:
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                BarColumn(bar_width=24),
                TaskProgressColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                console=self.out.console,
            )
            self._progress.start()
            self._task = self._progress.add_task("batch", total=self.total, counts="")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._render()
        if self._progress is not None:
            self._progress.stop()
        self._summary()

    # -- input

    def line_submitted(self, number: int) -> None:
        self._lines[self._next_index] = number
        self._next_index += 1

    def bad_line(self, number: int, error: BaseException) -> None:
        self.failed += 1
        self._show(index=None, line=number, state="invalid", error=error)
        self._render()

    def read_failed(self, name: str, number: int, error: BaseException) -> None:
        self.read_error = True
        self.out.error(f"stopped reading {name} at line {number}: {_describe(error)}")

    # -- events and outcomes

    def on_event(self, event: Event) -> None:
        if isinstance(event, SubmittedEvent):
            self.submitted += 1
            self.active[event.index] = event.job
        elif isinstance(event, StateChangedEvent | ProgressEvent):
            if event.index in self.active:
                self.active[event.index] = event.job
        elif isinstance(event, DownloadedEvent):
            self.downloaded += 1
            self.active.pop(event.index, None)
        elif isinstance(event, FailedEvent):
            self.active.pop(event.index, None)
        self._render()

    def outcome(self, outcome: Outcome) -> None:
        self.active.pop(outcome.index, None)
        line = self._lines.pop(outcome.index, None)
        if outcome.ok:
            self.succeeded += 1
        else:
            self.failed += 1
        self._show(
            index=outcome.index,
            line=line,
            state=_outcome_state(outcome),
            task_id=None if outcome.job is None else outcome.job.id,
            model=outcome.request.model,
            path=outcome.path,
            error=outcome.error,
        )
        self._render()

    def interrupted(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._report_unfinished("interrupted")

    def stopped(self, error: BaseException) -> None:
        # The scheduler notes unfinished tasks on the error itself; main() prints notes.
        if not getattr(error, "__notes__", None):
            self._report_unfinished("stopped")

    def _report_unfinished(self, why: str) -> None:
        if not self.active:
            return
        if self.simulated:
            self.out.note(f"{why}: {len(self.active)} simulated task(s) abandoned")
            return
        self.out.note(
            f"{why}: {len(self.active)} submitted task(s) not downloaded yet; each can be "
            "fetched later with `asyncvideo download TASK_ID --model MODEL --wait`:"
        )
        for job in self.active.values():
            self.out.note(f"  {job.id}  {job.model}  {job.state.value}")

    # -- drawing

    def _show(
        self,
        *,
        index: int | None,
        line: int | None,
        state: str,
        task_id: str | None = None,
        model: str | None = None,
        path: Path | None = None,
        error: BaseException | None = None,
    ) -> None:
        if self.out.json:
            self.out.record(
                {
                    "index": index,
                    "line": line,
                    "state": state,
                    "ok": error is None and path is not None,
                    "task_id": task_id,
                    "model": model,
                    "path": None if path is None else str(path),
                    "error": None if error is None else _describe(error),
                    "error_type": None if error is None else type(error).__name__,
                    # Present only for CreateOutcomeUnknown: the key to resolve it with.
                    "idempotency_key": getattr(error, "idempotency_key", None),
                }
            )
            return
        if self._progress is not None and error is None:
            return  # the bar shows successes; only failures get a line of their own
        where = f"line {line}: " if line is not None and error is not None else ""
        detail = str(path) if error is None else where + _describe(error)
        self.out.line(f"{'-' if index is None else index:>6}  {state:<10}  {detail}")

    def _render(self) -> None:
        if self._progress is None or self._task is None:
            return
        running = sum(job.state is JobState.RUNNING for job in self.active.values())
        # Partial credit for reported progress keeps the bar moving between downloads.
        partial = sum((job.progress or 0) for job in self.active.values()) / 100
        counts = (
            f"{self.submitted} submitted · {running} running · "
            f"{self.downloaded} downloaded · {self.failed} failed"
        )
        done = self.succeeded + self.failed
        self._progress.update(self._task, completed=done + partial, counts=counts)

    def _summary(self) -> None:
        wall = time.monotonic() - self.started
        text = (
            f"{self.succeeded} succeeded, {self.failed} failed in {wall:.1f} s "
            f"(output: {self.output_dir})"
        )
        if self.out.json:
            self.out.note(text)  # stdout stays one JSON object per line
        else:
            self.out.line(text)
        if self._next_index == 0 and self.failed == 0 and not self.read_error:
            self.out.note("asyncvideo: the prompt file has no prompts (blank lines and # skipped)")


def _outcome_state(outcome: Outcome) -> str:
    if outcome.ok:
        return "succeeded"
    if isinstance(outcome.error, CreateOutcomeUnknown):
        return "unknown"  # the gateway may have made (and may bill) a task
    if outcome.job is None:
        return "rejected"  # never created on the gateway
    if isinstance(outcome.error, JobTimeoutError):
        return "timeout"
    if outcome.job.state is JobState.SUCCEEDED:
        return "download-failed"
    return str(outcome.job.state.value)


# -- generate, status, download -----------------------------------------------------------------


async def _generate(args: argparse.Namespace, out: _Output) -> int:
    fields = _request_defaults(args)
    if args.image:
        fields["image"] = args.image
    async with _connect(args) as client:
        request = client.prepare(prompt=args.prompt, **fields)
        job = await client.submit(request)
        # Said at once, so the paid-for task can be found again if this run dies.
        out.note(f"submitted task {job.id} ({job.model})")
        with out.spinner(f"generating {job.id}"):
            job = await _wait(client, job, args.timeout)
            job.raise_for_state()
            path = await client.download(job, args.output)
    out.line(str(path))
    return EXIT_OK


async def _wait(client: Client, job: Job, timeout: float | None) -> Job:
    try:
        return await client.wait(job, timeout=timeout)
    except JobTimeoutError as exc:
        exc.add_note(
            f"fetch it later with: asyncvideo download {exc.job.id} --model {exc.job.model} --wait"
        )
        raise


async def _status(args: argparse.Namespace, out: _Output) -> int:
    async with _connect(args) as client:
        job = await client.get(args.task_id, model=args.model)
    if args.json:
        out.record({**_job_record(job), "raw": dict(job.raw)})
        return EXIT_OK
    _print_table(out, ("field", "value"), _job_rows(job))
    return EXIT_OK


def _job_rows(job: Job) -> list[tuple[str, str]]:
    optional = [
        ("native status", job.native_status),
        ("progress", None if job.progress is None else f"{job.progress}%"),
        ("video url", job.video_url),
        ("created", _iso(job.created_at)),
        ("completed", _iso(job.completed_at)),
        ("expires", _iso(job.expires_at)),
        ("error", None if job.error is None else f"{job.error.message} (code {job.error.code})"),
    ]
    rows = [("id", job.id), ("model", job.model), ("provider", job.provider)]
    rows.append(("state", job.state.value))
    rows.extend((name, value) for name, value in optional if value is not None)
    return rows


async def _download(args: argparse.Namespace, out: _Output) -> int:
    async with _connect(args) as client:
        job = await client.get(args.task_id, model=args.model)
        if not job.is_terminal:
            if not args.wait:
                progress = "" if job.progress is None else f", {job.progress}%"
                out.error(f"task {job.id} is still {job.state.value}{progress}; pass --wait")
                return EXIT_FAILED
            with out.spinner(f"waiting for {job.id}"):
                job = await _wait(client, job, None)
        job.raise_for_state()
        with out.spinner(f"downloading {job.id}"):
            path = await client.download(job, args.output)
    out.line(str(path))
    return EXIT_OK


# -- simulate, models ---------------------------------------------------------------------------


def _cmd_simulate(args: argparse.Namespace, out: _Output) -> int:
    # The testing package owns the standalone server (signals, banner); this verb is its
    # front door with defaults that suit the CLI.
    from .testing.__main__ import main as serve

    argv = ["--port", str(args.port), "--time-scale", repr(args.time_scale)]
    try:
        serve([*argv, "--failure-rate", repr(args.failure_rate)])
    except OSError as exc:  # the port is taken, most likely
        raise _UsageError(f"cannot serve on port {args.port}: {exc.strerror or exc}") from None
    out.note("simulator stopped")
    return EXIT_OK


def _cmd_models(args: argparse.Namespace, out: _Output) -> int:
    if args.json:
        for model, provider in KNOWN_MODELS.items():
            out.record({"model": model, "provider": provider})
        return EXIT_OK
    _print_table(out, ("model", "provider"), list(KNOWN_MODELS.items()))
    return EXIT_OK


def _print_table(out: _Output, header: tuple[str, str], rows: list[tuple[str, str]]) -> None:
    if out.console is not None:
        from rich.table import Table
        from rich.text import Text

        table = Table(*header)
        for left, right in rows:
            # Text, not str: a bracket in an error message is not rich markup.
            table.add_row(Text(out.redact(left)), Text(out.redact(right)))
        out.console.print(table)
        return
    width = max(len(header[0]), *(len(left) for left, _ in rows))
    out.line(f"{header[0]:<{width}}  {header[1]}")
    for left, right in rows:
        out.line(f"{left:<{width}}  {right}")
