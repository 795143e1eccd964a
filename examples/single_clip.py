"""One clip, one ``await``: generate a video against the built-in simulator.

Run it from the repository root::

    python examples/single_clip.py

For a real gateway, drop the FakeGateway and the scaled poll policy, and let
``Client()`` read ``ASYNCVIDEO_API_KEY`` and ``ASYNCVIDEO_BASE_URL``.
"""

from __future__ import annotations

import anyio

from asyncvideo import Client, PollPolicy
from asyncvideo.testing import FakeGateway

# The simulator runs 20x faster than a real gateway, so the client polls 20x sooner.
SCALE = 0.05


async def main() -> None:
    async with (
        FakeGateway(time_scale=SCALE) as gateway,
        Client(
            api_key=gateway.api_key,
            base_url=gateway.url,
            poll_policy=PollPolicy().scaled(SCALE),
        ) as client,
    ):
        path = await client.generate(
            prompt="a red fox trotting through fresh snow at dawn",
            model="kling-v1",
            seconds=5,
            output="videos/fox.mp4",
        )
    size = (await anyio.Path(path).stat()).st_size
    print(f"saved {path} ({size:,} bytes)")


if __name__ == "__main__":
    anyio.run(main, backend="asyncio")
