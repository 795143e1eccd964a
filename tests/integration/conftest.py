"""A real gateway in front of the FakeGateway: the LiteLLM proxy, run from its own virtualenv.

The proxy is started once per module as a subprocess, offline (every HTTP(S)
proxy variable points at a closed loopback port, so any attempt to reach the
internet fails at once instead of hanging), with a generated config that
routes ``sora-2`` to a :class:`~asyncvideo.testing.FakeGateway` on loopback.
"""

from __future__ import annotations

import base64
import binascii
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import anyio
import attrs
import pytest
from anyio.abc import Process

from asyncvideo.testing import FakeGateway

REPO_ROOT = Path(__file__).resolve().parents[2]
MASTER_KEY = "sk-litellm-master-0123456789"
UPSTREAM_KEY = "sk-upstream-fake-key"
STARTUP_TIMEOUT = 90.0
CLOSED_PORT_PROXY = "http://127.0.0.1:9"
_LITELLM_ID_PREFIX = "video_"


@attrs.frozen
class LiteLLMProxy:
    url: str
    master_key: str
    log_path: Path
    startup_seconds: float

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)


def litellm_python() -> Path:
    """``$ASYNCVIDEO_LITELLM_PYTHON``, else ``<repo>/.venv-litellm/bin/python``."""
    configured = os.environ.get("ASYNCVIDEO_LITELLM_PYTHON")
    return Path(configured) if configured else REPO_ROOT / ".venv-litellm" / "bin" / "python"


def upstream_id(litellm_id: str) -> str:
    """The upstream task id inside a LiteLLM video id (the id itself if it is not one).

    LiteLLM answers ``video_`` + base64 of
    ``litellm:custom_llm_provider:openai;model_id:<model>;video_id:<upstream id>``.
    """
    if not litellm_id.startswith(_LITELLM_ID_PREFIX):
        return litellm_id
    payload = litellm_id[len(_LITELLM_ID_PREFIX) :]
    try:
        text = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True).decode()
    except (binascii.Error, ValueError):
        return litellm_id
    _, found, rest = text.partition(";video_id:")
    return rest if found else litellm_id


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no proxy output: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _config_yaml(upstream_url: str) -> str:
    # JSON strings are valid YAML scalars, so no YAML library is needed here.
    return (
        "model_list:\n"
        "  - model_name: sora-2\n"
        "    litellm_params:\n"
        '      model: "openai/sora-2"\n'
        f'      api_base: "{upstream_url}/v1"\n'
        f'      api_key: "{UPSTREAM_KEY}"\n'
        "litellm_settings:\n"
        "  telemetry: false\n"
        "general_settings:\n"
        f'  master_key: "{MASTER_KEY}"\n'
    )


def _proxy_env(home: Path) -> dict[str, str]:
    dropped = (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_API_BASE",
        "DATABASE_URL",
        "LITELLM_MASTER_KEY",
        "LITELLM_MODE",
        "LITELLM_CONFIG",
        "CONFIG_FILE_PATH",
        "REDIS_HOST",
        "REDIS_URL",
        "ALL_PROXY",
        "all_proxy",
    )
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env.update(
        {
            "HTTP_PROXY": CLOSED_PORT_PROXY,
            "HTTPS_PROXY": CLOSED_PORT_PROXY,
            "http_proxy": CLOSED_PORT_PROXY,
            "https_proxy": CLOSED_PORT_PROXY,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
            "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
            "LITELLM_MODE": "PRODUCTION",  # never load a .env file
            "LITELLM_LOG": "WARNING",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "DO_NOT_TRACK": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": str(home),
        }
    )
    return env


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # Module scope so the gateway and the proxy (module fixtures) share one event loop.
    return "asyncio"


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[FakeGateway]:
    """The upstream gateway, on real time: jobs take 1-2 s."""
    async with FakeGateway(
        api_key=UPSTREAM_KEY,
        vocabulary="openai",
        durations=(1.0, 2.0),
        time_scale=1.0,
        video_bytes=48 * 1024,
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def litellm_proxy(
    upstream: FakeGateway, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiteLLMProxy]:
    python = litellm_python()
    if not python.exists():
        pytest.skip(
            f"LiteLLM is not installed ({python} is missing): "
            ".ci/run creates .venv-litellm; see README"
        )
    workdir = tmp_path_factory.mktemp("litellm")
    (workdir / "home").mkdir()
    config = workdir / "config.yaml"
    config.write_text(_config_yaml(upstream.url))
    log_path = workdir / "proxy.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(python),
        "-m",
        "litellm.proxy.proxy_cli",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = await anyio.open_process(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=_proxy_env(workdir / "home"),
        )
        try:
            await _wait_until_live(process, url, log_path)
            proxy = LiteLLMProxy(url, MASTER_KEY, log_path, time.monotonic() - started)
            yield proxy
        finally:
            await _stop(process)


async def _wait_until_live(process: Process, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    timeout = aiohttp.ClientTimeout(total=2.0)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
        while True:
            if process.returncode is not None:
                pytest.fail(
                    f"the LiteLLM proxy exited with status {process.returncode} before it "
                    f"was live; its output ends:\n{_tail(log_path, 40)}"
                )
            try:
                async with session.get(f"{url}/health/liveliness") as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the LiteLLM proxy was not live on {url}/health/liveliness after "
                    f"{STARTUP_TIMEOUT:.0f} s; its output ends:\n{_tail(log_path, 40)}"
                )
            await anyio.sleep(0.2)


async def _stop(process: Process) -> None:
    if process.returncode is None:
        process.terminate()
        with anyio.move_on_after(20):
            await process.wait()
    if process.returncode is None:
        process.kill()
    await process.aclose()
