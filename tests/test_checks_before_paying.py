"""Point 7: nothing is paid for before it can be kept; and a journal that fails loses no task.

The output location is checked before any create, a path ending with a
separator is a folder, a batch that cannot reach its gateway stops early with
one error, and a store that raises neither hides a paid task nor kills the
batch with its outcomes undelivered.
"""

from __future__ import annotations

import os
import socket
from collections import namedtuple
from pathlib import Path

import pytest

from asyncvideo import (
    AiohttpTransport,
    Batch,
    Client,
    HTTPRequest,
    HTTPResponse,
    Job,
    JournalEntry,
    Limits,
    ManualClock,
    Outcome,
    SQLiteJournal,
    VideoRequest,
    errors,
)
from asyncvideo._batch_run import MAX_CONNECT_FAILURES
from asyncvideo.cli import main
from asyncvideo.testing import FakeGateway

from .conftest import ClientFactory
from .test_batch import prompts

pytestmark = pytest.mark.anyio


async def collect(client: Client, requests: object, out: Path, **kw: object) -> list[Outcome]:
    return [
        outcome
        async for outcome in client.generate_many(requests, output_dir=out, **kw)  # type: ignore[arg-type]
    ]


async def read_into(outcomes: list[Outcome], batch: Batch) -> None:
    """Keep each outcome as it arrives, so a batch that then raises still shows them."""
    async for outcome in batch:
        outcomes.append(outcome)  # noqa: PERF401 - kept one by one, the error comes after


# -- (a) the output location, before any create ---------------------------------------------


async def test_point_7_an_output_dir_that_is_a_file_is_refused_before_any_create(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    blocker = tmp_path / "videos"
    blocker.write_text("not a folder")
    with pytest.raises(errors.OutputError) as caught:
        await collect(client, prompts(3), blocker)
    assert caught.value.path == str(blocker)
    assert isinstance(caught.value, OSError)
    assert gateway.stats.creates == 0


async def test_point_7_an_output_dir_under_a_file_is_refused_before_any_create(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    (tmp_path / "parent").write_text("a file")
    with pytest.raises(errors.OutputError):
        await collect(client, prompts(3), tmp_path / "parent" / "videos")
    assert gateway.stats.creates == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
async def test_point_7_an_unwritable_output_dir_is_refused_before_any_create(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(errors.OutputError):
            await collect(client, prompts(3), locked)
    finally:
        locked.chmod(0o700)
    assert gateway.stats.creates == 0


async def test_point_7_an_output_dir_without_room_for_one_clip_is_refused_before_any_create(
    client: Client, gateway: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")

    def nearly_full(path: object) -> object:
        return usage(10**9, 10**9 - 1024, 1024)

    monkeypatch.setattr("asyncvideo._destination.shutil.disk_usage", nearly_full)
    with pytest.raises(errors.OutputError, match="MiB free"):
        await collect(client, prompts(3), tmp_path / "videos")
    assert gateway.stats.creates == 0


async def test_point_7_a_missing_output_dir_is_created_and_used(
    client: Client, tmp_path: Path
) -> None:
    out = tmp_path / "new" / "videos"
    outcomes = await collect(client, prompts(2), out)
    assert all(o.ok for o in outcomes)
    assert len(list(out.glob("*.mp4"))) == 2
    assert not list(out.glob(".asyncvideo-probe-*"))  # the write probe is gone


async def test_point_7_generate_checks_its_output_folder_before_the_create(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("a file")
    with pytest.raises(errors.OutputError):
        await client.generate(prompt="a cat", model="sora-2", output=tmp_path / "file" / "a.mp4")
    assert gateway.stats.creates == 0


# -- (b) a path ending with a separator is a folder -----------------------------------------


async def test_point_7_generate_output_newdir_slash_writes_id_mp4_inside(
    client: Client, tmp_path: Path
) -> None:
    dest = f"{tmp_path / 'newdir'}{os.sep}"
    path = await client.generate(prompt="a cat", model="sora-2", output=dest)
    assert path.parent == tmp_path / "newdir"
    assert path.name.endswith(".mp4")
    assert (tmp_path / "newdir").is_dir()


async def test_point_7_download_to_a_path_ending_with_a_separator_creates_the_folder(
    client: Client, tmp_path: Path
) -> None:
    job = await client.wait(await client.submit(prompt="a cat", model="sora-2"))
    path = await client.download(job, f"{tmp_path / 'clips'}{os.sep}")
    assert path == tmp_path / "clips" / f"{job.id}.mp4"
    assert path.is_file()


def test_point_7_cli_generate_output_newdir_slash_writes_id_mp4_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ASYNCVIDEO_API_KEY", raising=False)
    dest = f"{tmp_path / 'newdir'}{os.sep}"
    argv = ["generate", "a lighthouse", "--simulate", "--time-scale", "0.01", "--output", dest]
    assert main(argv) == 0
    files = list((tmp_path / "newdir").glob("*.mp4"))
    assert len(files) == 1
    assert capsys.readouterr().out.strip() == str(files[0])


def test_point_7_cli_batch_into_a_file_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ASYNCVIDEO_API_KEY", raising=False)
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("a fox\na cat\n")
    blocker = tmp_path / "videos"
    blocker.write_text("a file")
    argv = ["batch", str(prompts_file), "--simulate", "--output-dir", str(blocker)]
    assert main(argv) == 2  # OutputError: the exit code the --help epilog documents
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if "error" in line]
    assert str(blocker) in line
    assert "is a file" in line


# -- (c) an unreachable gateway stops the batch early ---------------------------------------


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_point_7_a_batch_against_an_unreachable_gateway_stops_with_one_connect_error(
    tmp_path: Path,
) -> None:
    async with Client(api_key="sk-test", base_url=closed_port(), clock=ManualClock()) as client:
        outcomes: list[Outcome] = []
        with pytest.raises(errors.ConnectError, match="could not be reached"):
            await read_into(outcomes, client.generate_many(prompts(200), output_dir=tmp_path))
    assert len(outcomes) < MAX_CONNECT_FAILURES  # not 200 errors


class GoesDown(AiohttpTransport):
    """The network between the client and the gateway fails after ``creates`` creates."""

    def __init__(self, creates: int) -> None:
        super().__init__()
        self.allowed = creates

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        if request.method == "POST":
            if self.allowed <= 0:
                raise errors.ConnectError("cannot connect (the network is down)")
            self.allowed -= 1
        return await super().send(request)


async def test_point_7_the_unreachable_stop_lists_the_tasks_already_created(
    make_client: ClientFactory, gateway: FakeGateway, tmp_path: Path
) -> None:
    client = make_client(transport=GoesDown(creates=2), limits=Limits(max_creates=1))
    with pytest.raises(errors.ConnectError) as caught:
        await collect(client, prompts(20), tmp_path)
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert gateway.stats.creates == 2
    assert "tasks submitted and not finished" in notes
    assert len(gateway.tasks) == 2
    for task_id in gateway.tasks:  # the tasks created before the network went down
        assert task_id in notes


# -- a journal (JobStore) that fails ---------------------------------------------------------


class FailingStore:
    """A SQLite journal whose ``record_job`` or ``record_outcome`` raises for some rows."""

    def __init__(
        self, inner: SQLiteJournal, *, job_fails: set[int], outcome_fails: set[int]
    ) -> None:
        self.inner = inner
        self.job_fails = job_fails
        self.outcome_fails = outcome_fails

    async def get(self, index: int) -> JournalEntry | None:
        return await self.inner.get(index)

    async def record_intent(self, index: int, request: VideoRequest, key: str) -> None:
        await self.inner.record_intent(index, request, key)

    async def record_job(self, index: int, job: Job) -> None:
        if index in self.job_fails:
            raise OSError(28, "No space left on device")
        await self.inner.record_job(index, job)

    async def record_outcome(
        self, index: int, *, state: str | None, path: Path | None, error: BaseException | None
    ) -> None:
        if index in self.outcome_fails:
            raise OSError(28, "No space left on device")
        await self.inner.record_outcome(index, state=state, path=path, error=error)


async def run_with_store(
    client: Client, store: FailingStore, n: int, out: Path
) -> tuple[list[Outcome], errors.OutputError]:
    outcomes: list[Outcome] = []
    with pytest.raises(errors.OutputError) as caught:
        await read_into(outcomes, client.generate_many(prompts(n), output_dir=out, store=store))
    return outcomes, caught.value


async def test_store_failing_record_job_keeps_the_paid_task_and_names_it(
    client: Client, gateway: FakeGateway, tmp_path: Path
) -> None:
    journal = await SQLiteJournal.open(tmp_path / "journal.sqlite")
    try:
        store = FailingStore(journal, job_fails={0}, outcome_fails=set())
        outcomes, error = await run_with_store(client, store, 1, tmp_path / "videos")
    finally:
        await journal.close()
    assert gateway.stats.creates == 1
    [outcome] = outcomes
    assert outcome.ok
    assert outcome.job is not None
    assert outcome.path is not None
    assert outcome.path.is_file()  # polled and downloaded all the same
    assert outcome.job.id in "\n".join(error.__notes__)
    assert isinstance(error.__cause__, OSError)


async def test_store_failing_record_outcome_delivers_what_was_done_and_creates_no_more(
    make_client: ClientFactory, gateway: FakeGateway, tmp_path: Path
) -> None:
    client = make_client(limits=Limits(max_active_jobs=3))
    journal = await SQLiteJournal.open(tmp_path / "journal.sqlite")
    try:
        store = FailingStore(journal, job_fails=set(), outcome_fails={0, 1, 2, 3, 4, 5})
        outcomes, error = await run_with_store(client, store, 30, tmp_path / "videos")
    finally:
        await journal.close()
    assert outcomes, "the outcomes already done are delivered"
    created = gateway.stats.creates
    assert created < 30  # the journal failed: nothing more was paid for
    assert len(outcomes) == created  # every created task was seen through
    assert all(o.job is not None for o in outcomes if o.ok)
    assert "journal failed" in str(error)
