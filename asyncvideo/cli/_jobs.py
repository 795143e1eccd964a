"""``asyncvideo generate``, ``status`` and ``download``: one task at a time."""

from __future__ import annotations

import argparse

from .. import Client, Job, check_output
from ..errors import JobTimeoutError
from ._common import EXIT_FAILED, EXIT_OK, connect, request_defaults
from ._output import Output, iso


async def generate(args: argparse.Namespace, out: Output) -> int:
    fields = request_defaults(args)
    if args.image:
        fields["image"] = args.image
    async with connect(args) as client:
        request = client.prepare(prompt=args.prompt, **fields)
        await check_output(args.output)  # before paying: a clip that cannot be kept is lost
        job = await client.submit(request)
        # Said at once, so the paid-for task can be found again if this run dies.
        out.note(f"submitted task {job.id} ({job.model})")
        with out.spinner(f"generating {job.id}"):
            job = await _wait(client, job, args.timeout)
            job.raise_for_state()
            path = await client.download(job, args.output)
    out.line(str(path))
    return EXIT_OK


async def status(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as client:
        job = await client.get(args.task_id, model=args.model)
    if args.json:
        out.record(job.to_dict())  # the library's one JSON form
        return EXIT_OK
    out.table(("field", "value"), _job_rows(job))
    return EXIT_OK


async def download(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as client:
        job = await client.get(args.task_id, model=args.model)
        if not job.is_terminal:
            if not args.wait:
                progress = "" if job.progress is None else f", {job.progress}%"
                out.error(f"task {job.id} is still {job.state.value}{progress}; pass --wait")
                return EXIT_FAILED
            with out.spinner(f"waiting for {job.id}"):
                job = await _wait(client, job, None)
        job.raise_for_state()
        with out.spinner(f"downloading {job.id}"):
            path = await client.download(job, args.output)
    out.line(str(path))
    return EXIT_OK


async def _wait(client: Client, job: Job, timeout: float | None) -> Job:
    try:
        return await client.wait(job, timeout=timeout)
    except JobTimeoutError as exc:
        exc.add_note(
            f"fetch it later with: asyncvideo download {exc.job.id} --model {exc.job.model} --wait"
        )
        raise


def _job_rows(job: Job) -> list[tuple[str, str]]:
    optional = [
        ("native status", job.native_status),
        ("progress", None if job.progress is None else f"{job.progress}%"),
        ("video url", job.video_url),
        ("created", iso(job.created_at)),
        ("completed", iso(job.completed_at)),
        ("expires", iso(job.expires_at)),
        ("error", None if job.error is None else f"{job.error.message} (code {job.error.code})"),
    ]
    rows = [("id", job.id), ("model", job.model), ("provider", job.provider)]
    rows.append(("state", job.state.value))
    rows.extend((name, value) for name, value in optional if value is not None)
    return rows
