"""``asyncvideo batch``: one clip per request of a prompt file, through ``generate_many``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio

from .. import Client, Limits, VideoRequest, read_requests
from ..errors import AsyncVideoError, ValidationError
from ._common import EXIT_FAILED, EXIT_OK, UsageError, check_gateway_args, connect, request_defaults
from ._output import Output
from ._progress import BatchView

if TYPE_CHECKING:
    from .._request_files import Format


def cmd_batch(args: argparse.Namespace, out: Output) -> int:
    check_gateway_args(args)
    source: str | IO[str] = sys.stdin if args.prompts_file == "-" else args.prompts_file
    if isinstance(source, str):
        _check_readable(source)
    return anyio.run(_batch, args, out, source, backend="asyncio")


def _check_readable(name: str) -> None:
    """A missing or unreadable file is a usage error now, before any gateway is contacted."""
    try:
        with open(name, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None


async def _batch(args: argparse.Namespace, out: Output, source: str | IO[str]) -> int:
    defaults = request_defaults(args)
    view = BatchView(out, output_dir=Path(args.output_dir), simulated=args.simulate)
    feed = _Feed(source, args.format, defaults, view)
    limits = Limits(max_active_jobs=args.jobs) if args.jobs else None
    async with connect(args, limits=limits) as client:
        if feed.reader.format == "text":
            # Every line shares these settings: a combination the model refuses is a
            # usage error now, not N identical failures later.
            client.prepare(prompt="-", **defaults)
        if out.console is not None and isinstance(source, str):
            view.total = await anyio.to_thread.run_sync(
                _count_requests, source, feed.reader.format == "csv"
            )
        with view:
            await _run(args, client, feed, view)
    return EXIT_OK if view.failed == 0 and not view.read_error else EXIT_FAILED


async def _run(args: argparse.Namespace, client: Client, feed: _Feed, view: BatchView) -> None:
    # Both closed here, not by the garbage collector: the batch cancels and waits
    # for its own tasks while the client is still open.
    async with (
        contextlib.aclosing(feed.requests()) as requests,
        contextlib.aclosing(
            client.generate_many(
                requests,
                output_dir=view.output_dir,
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


class _Feed:
    """The prompt file's requests for the batch, each noted with its line number.

    Bad lines are shown as ``invalid`` outcomes and skipped, so one typo does not
    stop a batch of paid jobs; a file that cannot be read further stops the
    feeding, and the jobs already started still finish.
    """

    def __init__(
        self,
        source: str | IO[str],
        fmt: Format,
        defaults: Mapping[str, Any],
        view: BatchView,
    ) -> None:
        self._view = view
        self.reader = read_requests(source, format=fmt, on_invalid=self._invalid, **defaults)

    def _invalid(self, error: ValidationError) -> None:
        self._view.bad_line(self.reader.line, error)

    async def requests(self) -> AsyncGenerator[VideoRequest, None]:
        try:
            async for request in self.reader:
                self._view.line_submitted(self.reader.line)
                yield request
        except OSError as exc:
            # Stop feeding but let the jobs already in flight finish: they are paid for.
            self._view.read_failed(self.reader.name, self.reader.line + 1, exc)
        finally:
            await self.reader.aclose()


def _count_requests(path: str, csv: bool) -> int:
    """Request lines in a file, for the progress bar's total (one streaming pass)."""
    with open(path, encoding="utf-8-sig", errors="replace") as stream:
        lines = sum(1 for line in stream if (text := line.strip()) and not text.startswith("#"))
    return max(lines - 1, 0) if csv else lines  # a CSV file's first row is its header
