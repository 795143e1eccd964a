"""``asyncvideo simulate`` and ``models``: verbs that talk to no gateway."""

from __future__ import annotations

import argparse

from .. import KNOWN_MODELS
from ._common import EXIT_OK, UsageError
from ._output import Output


def cmd_simulate(args: argparse.Namespace, out: Output) -> int:
    # The testing package owns the standalone server (signals, banner); this verb is its
    # front door with defaults that suit the CLI.
    from ..testing.__main__ import main as serve

    argv = ["--port", str(args.port), "--time-scale", repr(args.time_scale)]
    try:
        serve([*argv, "--failure-rate", repr(args.failure_rate)])
    except OSError as exc:  # the port is taken, most likely
        raise UsageError(f"cannot serve on port {args.port}: {exc.strerror or exc}") from None
    out.note("simulator stopped")
    return EXIT_OK


def cmd_models(args: argparse.Namespace, out: Output) -> int:
    if args.json:
        for model, provider in KNOWN_MODELS.items():
            out.record({"model": model, "provider": provider})
        return EXIT_OK
    out.table(("model", "provider"), list(KNOWN_MODELS.items()))
    return EXIT_OK
