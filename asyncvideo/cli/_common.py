"""What every verb shares: exit codes, the usage error, and connecting to a gateway."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from .. import Client, Limits, PollPolicy, RetryPolicy
from ..errors import (
    AsyncVideoError,
    AuthenticationError,
    ConfigurationError,
    OutputError,
    ValidationError,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Simulated clips take 20-40 s; at this scale about 1-2 s, quick but long enough to watch.
SIMULATE_TIME_SCALE = 0.05

# Errors that mean "fix the command or the environment", not "the gateway failed a job".
USAGE_ERRORS: tuple[type[AsyncVideoError], ...] = (
    ConfigurationError,
    ValidationError,
    AuthenticationError,
    OutputError,
)

#: What ``asyncvideo --help`` and the README say about exit codes.
EXIT_CODES_HELP = (
    "Exit codes: 0 everything succeeded; 1 a job, a download or the gateway failed; "
    "2 usage or environment: bad arguments, no or a rejected API key, an output folder "
    "or journal the file system refuses (not a folder, read-only, full); 130 interrupted. "
    "Errors are one line on stderr, never a traceback."
)


class UsageError(Exception):
    """A mistake in the command line or environment (exit code 2)."""


def check_gateway_args(args: argparse.Namespace) -> None:
    """Refuse contradictory or missing gateway settings before any loop or server starts."""
    if args.simulate:
        if args.base_url:
            raise UsageError("--simulate and --base-url exclude each other")
        return
    if args.time_scale is not None:
        raise UsageError("--time-scale needs --simulate")
    if not os.environ.get("ASYNCVIDEO_API_KEY"):
        raise UsageError(
            "set ASYNCVIDEO_API_KEY (it is not taken as a flag, to keep it out of shell "
            "history), or try --simulate"
        )
    if not (args.base_url or os.environ.get("ASYNCVIDEO_BASE_URL")):
        raise UsageError("set ASYNCVIDEO_BASE_URL or pass --base-url, or try --simulate")


@contextlib.asynccontextmanager
async def connect(
    args: argparse.Namespace, *, limits: Limits | None = None
) -> AsyncIterator[Client]:
    """A client for the configured gateway, or for a FakeGateway started for this run."""
    if not args.simulate:
        async with Client(base_url=args.base_url, gateway=args.gateway, limits=limits) as client:
            yield client
        return
    from ..testing import FakeGateway

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


def request_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields given as flags (``--model``, ``--seconds``, ``--size``)."""
    given = {"model": args.model, "seconds": args.seconds, "size": args.size}
    return {name: value for name, value in given.items() if value is not None}
