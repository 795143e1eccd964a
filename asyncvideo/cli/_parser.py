"""The command line: one parser, a sub-parser per verb, shared options as parent parsers."""

from __future__ import annotations

import argparse
from typing import TypeAlias

import attrs

from .. import GATEWAYS, VideoRequest, __version__
from ..errors import ValidationError
from ._common import EXIT_CODES_HELP, SIMULATE_TIME_SCALE

__all__ = ["build_parser"]

_Verbs: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


@attrs.frozen
class _Parents:
    """Option groups several verbs share, as argparse parent parsers."""

    common: argparse.ArgumentParser
    gateway: argparse.ArgumentParser
    request: argparse.ArgumentParser
    as_json: argparse.ArgumentParser


# -- value types: each raises ArgumentTypeError, which argparse turns into a usage error (2)


def _number(text: str, what: str, cast: type[float] | type[int] = float) -> float:
    try:
        return cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _positive_float(text: str) -> float:
    value = _number(text, "a number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = int(_number(text, "a whole number", int))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def _port(text: str) -> int:
    value = int(_number(text, "a port number", int))
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _number(text, "a number")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value


def _size(text: str) -> str:
    try:
        VideoRequest(prompt="-", size=text)  # the library's own check, not a copy of it
    except ValidationError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT such as 1280x720, got {text!r}"
        ) from None
    return text


# -- the parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``asyncvideo`` command."""
    parser = argparse.ArgumentParser(
        prog="asyncvideo",
        description="Generate AI videos through an asynchronous video-generation gateway.",
        epilog=(
            "The API key is read from ASYNCVIDEO_API_KEY and the gateway from "
            "ASYNCVIDEO_BASE_URL; try any verb with --simulate first. " + EXIT_CODES_HELP
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    parents = _parents()
    _add_batch(verbs, parents)
    _add_generate(verbs, parents)
    _add_status(verbs, parents)
    _add_download(verbs, parents)
    _add_simulate(verbs, parents)
    verbs.add_parser(
        "models",
        parents=[parents.common, parents.as_json],
        help="list the known models and their providers",
    )
    return parser


def _parents() -> _Parents:
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
    return _Parents(common=common, gateway=gateway, request=request, as_json=as_json)


def _add_batch(verbs: _Verbs, parents: _Parents) -> None:
    batch = verbs.add_parser(
        "batch",
        parents=[parents.common, parents.gateway, parents.request, parents.as_json],
        help="generate one clip per line of a prompt file",
        description=(
            "Generate one clip per prompt. PROMPTS_FILE has one prompt per line (blank "
            "lines and # comments are skipped), or is a .jsonl file of VideoRequest "
            'objects such as {"prompt": "...", "model": "kling-v1", "seconds": 5}, or a '
            ".csv file whose header row names VideoRequest fields (prompt,model,seconds); "
            "'-' reads standard input. --model/--seconds/--size are defaults for JSON "
            "lines and CSV rows."
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
        choices=("auto", "text", "jsonl", "csv"),
        default="auto",
        help="input format (auto: by file suffix; for '-' by the first line)",
    )


def _add_output(verb: argparse.ArgumentParser) -> None:
    verb.add_argument(
        "--output",
        default=".",
        metavar="PATH",
        help="file or folder to save to (default: ./<task id>.mp4)",
    )


def _add_generate(verbs: _Verbs, parents: _Parents) -> None:
    generate = verbs.add_parser(
        "generate",
        parents=[parents.common, parents.gateway, parents.request],
        help="generate one clip and print its path",
        description="Submit one prompt, wait for the clip, download it and print its path.",
    )
    generate.add_argument("prompt", metavar="PROMPT")
    generate.add_argument("--image", metavar="PATH_OR_URL", help="first frame / reference image")
    _add_output(generate)
    generate.add_argument(
        "--timeout", type=_positive_float, metavar="T", help="deadline in seconds"
    )


def _add_status(verbs: _Verbs, parents: _Parents) -> None:
    status = verbs.add_parser(
        "status",
        parents=[parents.common, parents.gateway, parents.as_json],
        help="show a task's state, progress and video URL",
    )
    status.add_argument("task_id", metavar="TASK_ID")
    status.add_argument("--model", required=True, metavar="M", help="the task's model")


def _add_download(verbs: _Verbs, parents: _Parents) -> None:
    download = verbs.add_parser(
        "download",
        parents=[parents.common, parents.gateway],
        help="download a finished task's video",
    )
    download.add_argument("task_id", metavar="TASK_ID")
    download.add_argument("--model", required=True, metavar="M", help="the task's model")
    _add_output(download)
    download.add_argument(
        "--wait", action="store_true", help="wait for the task if it is still running"
    )


def _add_simulate(verbs: _Verbs, parents: _Parents) -> None:
    simulate = verbs.add_parser(
        "simulate",
        parents=[parents.common],
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
