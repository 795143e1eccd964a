"""The ``asyncvideo`` command.

Verbs::

    asyncvideo batch PROMPTS_FILE [--model M] [--seconds S] [--size WxH] [--output-dir DIR]
                     [--jobs N] [--timeout T] [--journal FILE]
                     [--format auto|text|jsonl|csv] [--json]
    asyncvideo generate PROMPT [--model M] [--seconds S] [--size WxH] [--image PATH_OR_URL]
                        [--output PATH] [--timeout T]
    asyncvideo status TASK_ID --model M [--json]
    asyncvideo download TASK_ID --model M [--output PATH] [--wait]
    asyncvideo simulate [--port 8000] [--time-scale 0.05] [--failure-rate P]
    asyncvideo models [--json]

Every verb that talks to a gateway takes ``--simulate`` (an in-process
FakeGateway on a random loopback port), or ``--base-url``/``--gateway``. The API
key comes only from ``$ASYNCVIDEO_API_KEY``: a flag would leave it in shell history.

Exit codes: 0 all succeeded, 1 something failed, 2 usage, configuration or
output-location error (``OutputError``), 130 interrupted (``EXIT_CODES_HELP``, shown
by ``--help``). Every error is one line on stderr, never a traceback.

One module per concern: ``_parser`` (the command line), ``_output`` (stdout,
stderr, rich), ``_progress`` (a batch on screen), ``_common`` (exit codes,
connecting), and the verbs in ``_batch``, ``_jobs`` (generate, status,
download) and ``_local`` (simulate, models). The verbs use only the public
library API.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, Sequence

import anyio

from ..errors import AsyncVideoError
from . import _jobs
from ._batch import cmd_batch
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    USAGE_ERRORS,
    UsageError,
    check_gateway_args,
)
from ._local import cmd_models, cmd_simulate
from ._output import Output, describe, logging_to_stderr
from ._parser import build_parser

__all__ = ["build_parser", "main"]

_Verb = Callable[[argparse.Namespace, Output], int]


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
    out = Output(
        json=getattr(args, "json", False),
        secret=os.environ.get("ASYNCVIDEO_API_KEY") or None,
    )
    with logging_to_stderr(args.verbose, out):
        return _run(_VERBS[args.verb], args, out)


def _run(verb: _Verb, args: argparse.Namespace, out: Output) -> int:
    """Run one verb; errors become a message on stderr and an exit code."""
    try:
        return verb(args, out)
    except UsageError as exc:
        out.error(str(exc))
        return EXIT_USAGE
    except AsyncVideoError as exc:
        out.error(describe(exc))
        for note in getattr(exc, "__notes__", ()):
            out.note(note)
        return EXIT_USAGE if isinstance(exc, USAGE_ERRORS) else EXIT_FAILED
    except OSError as exc:
        # The SDK's own file-system failures are OutputError; this is the CLI's own
        # reading and writing (a prompt file, stdout), still one line, not a traceback.
        out.error(describe(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        out.note("interrupted")
        return EXIT_INTERRUPTED


def _run_async(verb: Callable[[argparse.Namespace, Output], Awaitable[int]]) -> _Verb:
    """A verb that talks to a gateway: settings checked, then run on its own event loop."""

    def run(args: argparse.Namespace, out: Output) -> int:
        check_gateway_args(args)
        return anyio.run(verb, args, out, backend="asyncio")

    return run


_VERBS: dict[str, _Verb] = {
    "batch": cmd_batch,
    "generate": _run_async(_jobs.generate),
    "status": _run_async(_jobs.status),
    "download": _run_async(_jobs.download),
    "simulate": cmd_simulate,
    "models": cmd_models,
}
