"""Where the command writes: result lines on stdout, notes and logs on stderr, rich on a tty.

Every message passes :meth:`Output.redact`, so the API key cannot reach the
terminal even if some message were to carry it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console


class Output:
    """Plain lines, JSON lines or a rich console (rich only on a terminal, if installed)."""

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

    def table(self, header: tuple[str, str], rows: list[tuple[str, str]]) -> None:
        """Two columns: a rich table on a terminal, aligned plain text otherwise."""
        if self.console is not None:
            from rich.table import Table
            from rich.text import Text

            table = Table(*header)
            for left, right in rows:
                # Text, not str: a bracket in an error message is not rich markup.
                table.add_row(Text(self.redact(left)), Text(self.redact(right)))
            self.console.print(table)
            return
        width = max(len(header[0]), *(len(left) for left, _ in rows))
        self.line(f"{header[0]:<{width}}  {header[1]}")
        for left, right in rows:
            self.line(f"{left:<{width}}  {right}")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def describe(exc: BaseException) -> str:
    """An error as one line for a person: its message, or its class if it has none."""
    return str(exc) or type(exc).__name__


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@contextlib.contextmanager
def logging_to_stderr(verbosity: int, out: Output) -> Iterator[None]:
    """The SDK's log records as redacted notes on stderr, for the length of one command."""
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

    def __init__(self, out: Output) -> None:
        super().__init__()
        self._out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._out.note(self.format(record))
        except Exception:
            self.handleError(record)
