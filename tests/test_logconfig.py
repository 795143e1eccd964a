"""``ASYNCVIDEO_LOG``: the library's logging from the environment.

The variable itself is tested in a subprocess (a real environment, a real
stderr, a logger nobody configured); the rules about a logging setup already
there are tested in-process on a clean ``asyncvideo`` logger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncvideo._logconfig import ENV_VAR, configure_from_env

SECRET = "sk-logtest-5f0c9a7e2b"

# One client submits and waits for a job on a FakeGateway in virtual time; a
# second client is created to show the handler is added once.
SCRIPT = f"""
import anyio
from asyncvideo import Client, ManualClock
from asyncvideo.testing import FakeGateway

async def main() -> None:
    clock = ManualClock()
    async with FakeGateway(clock=clock, api_key={SECRET!r}, durations=(20.0, 20.0)) as gw:
        async with Client(api_key=gw.api_key, base_url=gw.url, clock=clock) as client:
            Client(api_key=gw.api_key, base_url=gw.url, clock=clock)
            job = await client.submit(prompt="a cat", model="kling-v1")
            await client.wait(job)
    print("done")

anyio.run(main)
"""


def run_with(level: str | None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != ENV_VAR}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    if level is not None:
        env[ENV_VAR] = level
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_debug_shows_polls_on_stderr_once_and_never_the_key() -> None:
    result = run_with("debug")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    lines = result.stderr.splitlines()
    polls = [line for line in lines if " DEBUG asyncvideo: polled task " in line]
    assert polls, result.stderr
    submitted = [line for line in lines if " INFO asyncvideo: submitted kling-v1 task" in line]
    assert len(submitted) == 1  # two clients, one handler: no line twice
    assert SECRET not in result.stderr


def test_info_hides_debug_lines() -> None:
    result = run_with("INFO")
    assert result.returncode == 0, result.stderr
    assert " INFO asyncvideo: submitted kling-v1 task" in result.stderr
    assert "DEBUG" not in result.stderr


def test_unset_is_silent_and_a_bad_value_is_a_warning_not_a_crash() -> None:
    assert run_with(None).stderr == ""
    result = run_with("loud")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert "RuntimeWarning: ASYNCVIDEO_LOG='loud' is not a log level" in result.stderr
    assert "debug, info, warning, error" in result.stderr
    assert "asyncvideo: submitted" not in result.stderr


# -- a logging setup that is already there ------------------------------------------------


@pytest.fixture
def clean_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("asyncvideo")
    handlers, level = list(logger.handlers), logger.level
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


@contextlib.contextmanager
def no_root_handlers() -> Iterator[None]:
    # Inside the test: pytest adds its capture handlers to the root just before the call.
    root = logging.getLogger()
    handlers = list(root.handlers)
    root.handlers.clear()
    try:
        yield
    finally:
        root.handlers[:] = handlers


def test_the_handler_is_added_once(
    clean_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, "debug")
    with no_root_handlers():
        configure_from_env()
        configure_from_env()
    assert len(clean_logger.handlers) == 1
    assert clean_logger.level == logging.DEBUG
    monkeypatch.setenv(ENV_VAR, "error")
    configure_from_env()  # follows a changed level, still one handler
    assert len(clean_logger.handlers) == 1
    assert clean_logger.handlers[0].level == logging.ERROR


def test_a_handler_of_the_users_wins(
    clean_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = logging.NullHandler()
    clean_logger.addHandler(mine)
    monkeypatch.setenv(ENV_VAR, "debug")
    configure_from_env()
    assert clean_logger.handlers == [mine]
    assert clean_logger.level == logging.NOTSET


def test_a_root_handler_gets_the_lines_once(
    clean_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest's own capture handlers sit on the root logger here, as basicConfig's would.
    assert logging.getLogger().handlers
    monkeypatch.setenv(ENV_VAR, "info")
    configure_from_env()
    assert clean_logger.handlers == []  # no second handler: each line would show twice
    assert clean_logger.level == logging.INFO
