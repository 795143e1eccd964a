"""Submit now, collect later: keep the task id, re-attach with ``client.get``.

A clip takes minutes and costs money, so a web handler or a script that may
restart should store the task id right after ``submit`` and pick the job up
again from the id alone. Run it from the repository root::

    python examples/reattach.py
"""

from __future__ import annotations

import json

import anyio

from asyncvideo import Client, Job, PollPolicy
from asyncvideo.testing import FakeGateway

SCALE = 0.05
TICKET = anyio.Path("videos/ticket.json")


async def main() -> None:
    async with FakeGateway(time_scale=SCALE) as gateway:

        def connect() -> Client:
            return Client(
                api_key=gateway.api_key,
                base_url=gateway.url,
                poll_policy=PollPolicy().scaled(SCALE),
            )

        # First process: submit and write down what is needed to find the task again.
        async with connect() as client:
            job = await client.submit(prompt="a lighthouse in a storm", model="viduq1")
            await TICKET.parent.mkdir(parents=True, exist_ok=True)
            # The library's one JSON form: the whole snapshot, ready to store anywhere.
            await TICKET.write_text(json.dumps(job.to_dict()))
            print(f"submitted {job.id}, state {job.state.value}; ticket in {TICKET}")

        # Later, perhaps in another process: re-attach from the ticket alone.
        saved = Job.from_dict(json.loads(await TICKET.read_text()))
        async with connect() as client:
            job = await client.get(saved.id, model=saved.model)
            print(f"re-attached to {job.id}: {job.state.value}, progress {job.progress}")
            job = await client.wait(job, timeout=60)
            job.raise_for_state()
            path = await client.download(job, "videos/lighthouse.mp4")
            print(f"saved {path}")


if __name__ == "__main__":
    anyio.run(main, backend="asyncio")
