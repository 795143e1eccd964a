"""The journal: a re-run resumes, never creates twice, never loses a task id."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from asyncvideo import Client, Job, JobState, Limits, Outcome, VideoRequest, errors
from asyncvideo._store import _SCHEMA, JournalEntry, SQLiteJournal, fingerprint
from asyncvideo.testing import FakeGateway

from .test_batch import SCALE, prompts, scaled_client

pytestmark = pytest.mark.anyio


@pytest.fixture
async def slow_gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(time_scale=SCALE, durations=(40.0, 80.0), video_bytes=8192) as gw:
        yield gw


async def run(client: Client, requests: object, out: Path, journal: Path) -> list[Outcome]:
    return [
        o
        async for o in client.generate_many(requests, output_dir=out, journal=journal)  # type: ignore[arg-type]
    ]


async def test_rerun_resumes_without_creating_twice(
    slow_gateway: FakeGateway, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.sqlite"
    first: list[Outcome] = []
    async with scaled_client(slow_gateway, limits=Limits(max_active_jobs=10)) as client:
        with anyio.CancelScope() as scope:  # Ctrl-C, in effect, once 5 clips are in
            async for outcome in client.generate_many(
                prompts(30), output_dir=tmp_path, journal=journal
            ):
                first.append(outcome)
                if len(first) == 5:
                    scope.cancel()
    assert 5 <= len(first) < 30
    # A download may finish after the cancel, with its outcome never delivered.
    finished_first = len(list(tmp_path.glob("*.mp4")))
    assert finished_first >= len(first)
    created_before = slow_gateway.stats.creates
    cdn_before = slow_gateway.stats.requests["cdn"]
    async with scaled_client(slow_gateway, limits=Limits(max_active_jobs=10)) as client:
        second = await run(client, prompts(30), tmp_path, journal)
    assert sorted(o.index for o in second) == list(range(30))
    assert all(o.ok for o in second), [o.error for o in second if o.error]
    # Every request was created exactly once across both runs.
    assert slow_gateway.stats.creates == 30
    assert slow_gateway.stats.idempotency_replays == 0
    # Clips finished in the first run were verified on disk, not fetched again.
    assert slow_gateway.stats.requests["cdn"] - cdn_before == 30 - finished_first
    assert created_before < 30
    for outcome in second:
        assert outcome.path is not None
        assert outcome.path.read_bytes()[4:8] == b"ftyp"


async def test_an_interrupted_create_is_not_blindly_repeated(
    slow_gateway: FakeGateway, tmp_path: Path
) -> None:
    journal_path = tmp_path / "j.sqlite"
    requests = list(prompts(3))
    journal = await SQLiteJournal.open(journal_path)
    await journal.record_intent(1, requests[1], "key-from-the-crashed-run")
    await journal.close()
    async with scaled_client(slow_gateway) as client:
        outcomes = {o.index: o for o in await run(client, requests, tmp_path, journal_path)}
    error = outcomes[1].error
    assert isinstance(error, errors.CreateOutcomeUnknown)
    assert error.idempotency_key == "key-from-the-crashed-run"
    assert outcomes[0].ok
    assert outcomes[2].ok
    assert slow_gateway.stats.creates == 2


async def test_a_changed_input_is_refused(slow_gateway: FakeGateway, tmp_path: Path) -> None:
    journal_path = tmp_path / "j.sqlite"
    async with scaled_client(slow_gateway) as client:
        await run(client, prompts(2), tmp_path, journal_path)
        changed = [VideoRequest(prompt="clip 0"), VideoRequest(prompt="something else")]
        outcomes = {o.index: o for o in await run(client, changed, tmp_path, journal_path)}
        downloads = slow_gateway.stats.downloads_completed
        # The refused run must not have made the journal forget the files it had.
        again = await run(client, prompts(2), tmp_path, journal_path)
    assert outcomes[0].ok
    assert isinstance(outcomes[1].error, errors.ValidationError)
    assert slow_gateway.stats.creates == 2
    assert all(o.ok for o in again)
    assert slow_gateway.stats.downloads_completed == downloads  # both skipped, verified on disk


async def test_a_broken_input_finishes_the_paid_jobs_then_raises(
    slow_gateway: FakeGateway, tmp_path: Path
) -> None:
    def broken() -> Iterator[VideoRequest]:
        yield from prompts(3)
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad byte in the prompt file")

    received: list[Outcome] = []

    async def consume(client: Client) -> None:
        async for outcome in client.generate_many(broken(), output_dir=tmp_path):
            received.append(outcome)  # noqa: PERF401 - must see those before the raise

    async with scaled_client(slow_gateway) as client:
        with pytest.raises(UnicodeDecodeError):
            await consume(client)
    assert sorted(o.index for o in received) == [0, 1, 2]
    assert all(o.ok for o in received)


async def test_the_journal_keeps_the_job_snapshot_and_reads_old_journals(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    # A journal from before the snapshot column: the table without it.
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE jobs (idx INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL,"
        " idempotency_key TEXT NOT NULL, model TEXT NOT NULL, provider TEXT, task_id TEXT,"
        " state TEXT, path TEXT, error TEXT, updated_at REAL NOT NULL)"
    )
    old.execute(
        "INSERT INTO jobs VALUES (0, 'fp', 'key-0', 'kling-v1', 'kling', 't0', 'queued',"
        " NULL, NULL, 0)"
    )
    old.commit()
    old.close()
    journal = await SQLiteJournal.open(path)
    try:
        before = await journal.get(0)
        assert before is not None
        assert (before.task_id, before.job) == ("t0", None)
        job = Job(
            id="t1",
            model="kling-v1",
            provider="kling",
            state=JobState.SUCCEEDED,
            video_url="https://cdn.example/v.mp4",
            expires_at=datetime(2030, 1, 1, tzinfo=UTC),
            raw={"big": "body"},
        )
        await journal.record_intent(1, VideoRequest(prompt="p", model="kling-v1"), "key-1")
        await journal.record_job(1, job)
        entry = await journal.get(1)
        assert entry is not None
        assert entry.job == job  # raw is not part of equality, and is not stored
        assert entry.job is not None
        assert dict(entry.job.raw) == {}
    finally:
        await journal.close()


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("a folder", errors.OutputError),  # the file system refuses: OutputError, with the path
        ("under a file", errors.OutputError),
        ("not sqlite", errors.ValidationError),  # the user's input is wrong
    ],
)
async def test_a_journal_that_cannot_be_opened_stops_the_batch_before_any_create(
    slow_gateway: FakeGateway, tmp_path: Path, kind: str, error: type[Exception]
) -> None:
    journal_path = tmp_path / "journal.sqlite"
    if kind == "a folder":
        journal_path.mkdir()
    elif kind == "under a file":
        (tmp_path / "file").write_text("x")
        journal_path = tmp_path / "file" / "journal.sqlite"
    else:
        journal_path.write_bytes(b"this is not a database" * 100)
    async with scaled_client(slow_gateway) as client:
        with anyio.fail_after(10), pytest.raises(error, match="journal") as caught:
            await run(client, prompts(3), tmp_path / "out", journal_path)
    if isinstance(caught.value, errors.OutputError):
        assert caught.value.path == str(journal_path)
        reason = "unable to open database file" if kind == "a folder" else "File exists"
        assert str(caught.value) == f"cannot open the journal {str(journal_path)!r}: {reason}"
    assert slow_gateway.stats.create_requests == 0


async def test_point_4_a_rerun_fetches_again_a_finished_file_that_was_cut_on_disk(
    slow_gateway: FakeGateway, tmp_path: Path
) -> None:
    journal_path = tmp_path / "journal.sqlite"
    async with scaled_client(slow_gateway) as client:
        first = await run(client, prompts(2), tmp_path, journal_path)
        damaged = next(o.path for o in first if o.index == 0)
        assert damaged is not None
        whole = damaged.read_bytes()
        damaged.write_bytes(whole[: len(whole) // 2])  # starts like an MP4, is not one
        cdn_before = slow_gateway.stats.requests["cdn"]
        again = await run(client, prompts(2), tmp_path, journal_path)
    assert all(o.ok for o in again)
    assert slow_gateway.stats.requests["cdn"] - cdn_before == 1  # only the damaged one
    assert damaged.read_bytes() == whole


def done_job(task_id: str) -> Job:
    return Job(id=task_id, model="kling-v1", provider="kling", state=JobState.SUCCEEDED)


async def test_the_journal_reads_back_every_field_it_recorded(tmp_path: Path) -> None:
    request = VideoRequest(prompt="a cat", model="kling-v1")
    # Two folders that do not exist yet: opening creates both.
    journal = await SQLiteJournal.open(tmp_path / "runs" / "today" / "journal.sqlite")
    try:
        assert await journal.get(7) is None
        await journal.record_intent(7, request, "key-7")
        await journal.record_job(7, done_job("t7"))
        await journal.record_outcome(7, state="succeeded", path=tmp_path / "t7.mp4", error=None)
        assert await journal.get(7) == JournalEntry(
            index=7,
            fingerprint=fingerprint(request),
            idempotency_key="key-7",
            model="kling-v1",
            provider="kling",
            task_id="t7",
            state="succeeded",
            path=str(tmp_path / "t7.mp4"),
            error=None,
            job=done_job("t7"),
        )
        # A later error keeps the state and file already known, and says what failed.
        await journal.record_outcome(
            7, state=None, path=None, error=errors.DownloadError("cut at byte 9")
        )
        entry = await journal.get(7)
        assert entry is not None
        assert (entry.state, entry.path) == ("succeeded", str(tmp_path / "t7.mp4"))
        assert entry.error == "DownloadError: cut at byte 9"
        await journal.record_outcome(7, state="failed", path=None, error=None)
        entry = await journal.get(7)
        assert entry is not None
        assert (entry.state, entry.error) == ("failed", None)
    finally:
        await journal.close()


async def test_a_journal_the_disk_refuses_to_write_is_an_output_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    await (await SQLiteJournal.open(path)).close()
    read_only = sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
    )
    journal = SQLiteJournal(read_only)  # built without a path: the error still names it
    try:
        with pytest.raises(errors.OutputError) as caught:
            await journal.record_intent(0, VideoRequest(prompt="p"), "key-0")
        assert str(caught.value) == (
            "cannot write the journal 'the journal': attempt to write a readonly database"
        )
    finally:
        await journal.close()


async def test_a_task_id_recorded_as_the_batch_is_cancelled_is_kept(tmp_path: Path) -> None:
    journal = await SQLiteJournal.open(tmp_path / "journal.sqlite")
    try:
        await journal.record_intent(0, VideoRequest(prompt="p"), "key-0")
        with anyio.CancelScope() as scope:
            scope.cancel()  # the cancel is already pending when the write starts
            await journal.record_job(0, done_job("t0"))
        entry = await journal.get(0)
        assert entry is not None
        assert entry.task_id == "t0"
    finally:
        await journal.close()


class OverlapCounter(sqlite3.Connection):
    """A connection that counts statements (and the close) running at the same time."""

    in_flight = 0
    most = 0
    waited = False
    peer_arrived = threading.Event()

    def _enter(self) -> None:
        cls = OverlapCounter
        cls.in_flight += 1
        cls.most = max(cls.most, cls.in_flight)
        if cls.in_flight > 1:
            cls.peer_arrived.set()

    def execute(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        self._enter()
        try:
            if not OverlapCounter.waited:
                # Long enough for a second worker thread to come in, were it let in.
                OverlapCounter.waited = True
                OverlapCounter.peer_arrived.wait(0.2)
            return super().execute(*args, **kwargs)
        finally:
            OverlapCounter.in_flight -= 1

    def close(self) -> None:
        self._enter()
        try:
            super().close()
        finally:
            OverlapCounter.in_flight -= 1


async def test_the_journal_runs_one_statement_at_a_time(tmp_path: Path) -> None:
    # sqlite3 shares one connection across worker threads only if calls take turns.
    OverlapCounter.in_flight, OverlapCounter.most, OverlapCounter.waited = 0, 0, False
    OverlapCounter.peer_arrived.clear()
    connection = sqlite3.connect(
        tmp_path / "journal.sqlite",
        check_same_thread=False,
        isolation_level=None,
        factory=OverlapCounter,
    )
    connection.executescript(_SCHEMA)
    journal = SQLiteJournal(connection)
    async with anyio.create_task_group() as tg:
        for index in range(2):
            tg.start_soon(journal.record_intent, index, VideoRequest(prompt="p"), f"k{index}")
        tg.start_soon(journal.close)
    assert OverlapCounter.most == 1


def test_a_fingerprint_is_stable_and_sees_every_field_but_the_key() -> None:
    request = VideoRequest(
        prompt="a cat",
        model="kling-v1",
        image=b"frame",
        last_frame=Path("last.png"),
        extra={"a": 1, "b": [2]},
        idempotency_key="k",
    )
    # Pinned: a journal written by an earlier release must still match its requests.
    assert fingerprint(request) == (
        "e89e04cd8af07c655d300128fd6283c370703286d54b23e424db7a1b8b948577"
    )
    same = [
        attrs.evolve(request, idempotency_key="another key"),
        attrs.evolve(request, extra={"b": [2], "a": 1}),
        attrs.evolve(request, last_frame="last.png"),
    ]
    assert {fingerprint(r) for r in same} == {fingerprint(request)}
    different = [
        attrs.evolve(request, image=b"other frame"),
        attrs.evolve(request, last_frame=Path("first.png")),
        attrs.evolve(request, extra={"a": 1, "b": [3]}),
        attrs.evolve(request, provider="kling"),
    ]
    assert len({fingerprint(r) for r in [request, *different]}) == 5
