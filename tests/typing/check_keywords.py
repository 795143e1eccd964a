"""What a type checker sees of ``submit``/``generate``/``prepare`` keywords.

Never run, only type-checked: by ``mypy --strict asyncvideo tests`` in CI and by
``test_mypy.py`` in the pytest run. ``warn_unused_ignores`` (on under
``--strict``) makes each ``# type: ignore[...]`` below an assertion: if the
line stopped being an error, the ignore would be unused and mypy would fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import assert_type

from asyncvideo import Client, Job, VideoRequest, VideoRequestFields


async def keywords_are_typed(client: Client) -> None:
    assert_type(await client.submit(prompt="a cat", model="kling-v1", seconds=5), Job)
    assert_type(await client.submit(VideoRequest(prompt="a cat"), seed=7), Job)
    assert_type(
        client.prepare(prompt="a cat", image=b"\x89PNG", extra={"mode": "pro"}), VideoRequest
    )
    assert_type(await client.generate(prompt="a cat", output="cat.mp4", timeout=60), Path)

    fields: VideoRequestFields = {"prompt": "a cat", "fps": 24}
    assert_type(await client.submit(**fields), Job)


async def misspelt_fields_are_caught(client: Client) -> None:
    await client.submit(promt="a cat")  # type: ignore[call-arg]
    client.prepare(prompt="a cat", sconds=5)  # type: ignore[call-arg]
    await client.generate(prompt="a cat", output="cat.mp4", colour="red")  # type: ignore[call-arg]


async def wrong_types_are_caught(client: Client) -> None:
    await client.submit(prompt="a cat", seconds="5")  # type: ignore[arg-type]
    client.prepare(prompt="a cat", fps=2.5)  # type: ignore[arg-type]
    await client.generate(prompt="a cat", output="cat.mp4", watermark="no")  # type: ignore[arg-type]
