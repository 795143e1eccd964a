"""Many clips at once with ``generate_many``, watching the batch through ``on_event``.

Run it from the repository root::

    python examples/batch.py

Requests are consumed lazily, so ``requests`` could just as well be
``asyncvideo.read_requests("prompts.txt", model="kling-v1")`` over a file of
100,000 lines. Outcomes arrive in completion order; one failed
job never stops the others.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio

from asyncvideo import (
    Client,
    DownloadedEvent,
    Event,
    FailedEvent,
    PollPolicy,
    StateChangedEvent,
    SubmittedEvent,
    VideoRequest,
)
from asyncvideo.testing import FakeGateway

SCALE = 0.05

PROMPTS = [
    ("a paper boat drifting down a rainy gutter", "kling-v1"),
    ("northern lights over a frozen lake", "sora-2"),
    ("a hummingbird at a red flower, slow motion", "viduq1"),
    ("neon alley in the rain at night", "wan2.5-t2v-preview"),
    ("ink drops blooming in water", "jimeng_vgfm_t2v_l20"),
    ("a steam train crossing a viaduct in autumn", "kling-v2-master"),
]


def requests() -> Iterator[VideoRequest]:
    for prompt, model in PROMPTS:
        yield VideoRequest(prompt=prompt, model=model, seconds=5)


def on_event(event: Event) -> None:
    # Called for every step of every job: progress bars and logs hang off this.
    if isinstance(event, SubmittedEvent):
        print(f"[{event.index}] submitted as {event.job.id}")
    elif isinstance(event, StateChangedEvent):
        print(f"[{event.index}] {event.previous.state.value} -> {event.job.state.value}")
    elif isinstance(event, DownloadedEvent):
        print(f"[{event.index}] downloaded {event.size:,} bytes")
    elif isinstance(event, FailedEvent):
        print(f"[{event.index}] failed: {event.error}")


async def main() -> None:
    async with (
        FakeGateway(time_scale=SCALE) as gateway,
        Client(
            api_key=gateway.api_key,
            base_url=gateway.url,
            poll_policy=PollPolicy().scaled(SCALE),
        ) as client,
    ):
        succeeded = 0
        # `async with` closes the batch on leaving, even on a break or Ctrl-C.
        async with client.generate_many(
            requests(), output_dir="videos/batch", on_event=on_event
        ) as outcomes:
            async for outcome in outcomes:
                if outcome.ok:
                    succeeded += 1
                    print(f"done #{outcome.index}: {outcome.path}")
                else:
                    print(f"done #{outcome.index}: {outcome.error}")
    print(f"{succeeded}/{len(PROMPTS)} clips in videos/batch")


if __name__ == "__main__":
    anyio.run(main, backend="asyncio")
