"""The durable job journal: SQLite in WAL mode, standard library only.

A batch writes the *intent* (request fingerprint and idempotency key) before a
create is sent, the task id as soon as the gateway answers, and the outcome at
the end. Re-running the batch with the same journal resumes it: finished files
are verified and skipped, known tasks are polled, and only requests that were
never sent are created. Every row is committed before the batch goes on, so a
crash at any point loses no task id.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

import anyio
import attrs

from ._models import Job, VideoRequest

__all__ = ["Journal", "JournalEntry", "fingerprint"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    idx INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT,
    task_id TEXT,
    state TEXT,
    path TEXT,
    error TEXT,
    updated_at REAL NOT NULL
)
"""


def fingerprint(request: VideoRequest) -> str:
    """A stable digest of what a request asks for (its idempotency key aside)."""
    digest = hashlib.sha256()
    for field in attrs.fields(VideoRequest):
        if field.name == "idempotency_key":
            continue
        value = getattr(request, field.name)
        if isinstance(value, bytes):
            value = "sha256:" + hashlib.sha256(value).hexdigest()
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        elif field.name == "extra":
            value = sorted((str(k), repr(v)) for k, v in value.items())
        digest.update(f"{field.name}={value!r};".encode())
    return digest.hexdigest()


@attrs.frozen
class JournalEntry:
    """What the journal knows about one request of a batch."""

    index: int
    fingerprint: str
    idempotency_key: str
    model: str
    provider: str | None
    task_id: str | None
    state: str | None
    path: str | None
    error: str | None


class Journal:
    """One batch's journal file. Use :meth:`open`; calls run in a worker thread.

    A single connection is shared, with a one-thread limiter so SQLite sees one
    writer at a time.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self._lock = anyio.CapacityLimiter(1)

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> Journal:
        def connect() -> sqlite3.Connection:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(os.fspath(path), check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            return db

        return cls(await anyio.to_thread.run_sync(connect))

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._db.close, limiter=self._lock)

    async def _run(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        def execute() -> list[tuple[object, ...]]:
            return self._db.execute(sql, params).fetchall()

        with anyio.CancelScope(shield=True):  # a row half-decided by a cancel is a lost id
            rows = await anyio.to_thread.run_sync(execute, limiter=self._lock)
        return rows

    async def get(self, index: int) -> JournalEntry | None:
        rows = await self._run(
            "SELECT idx, fingerprint, idempotency_key, model, provider, task_id, state, path,"
            " error FROM jobs WHERE idx = ?",
            (index,),
        )
        return JournalEntry(*rows[0]) if rows else None  # type: ignore[arg-type]

    async def record_intent(self, index: int, request: VideoRequest, key: str) -> None:
        """Before the create: this request is about to be sent with this key."""
        await self._run(
            "INSERT OR REPLACE INTO jobs (idx, fingerprint, idempotency_key, model, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (index, fingerprint(request), key, request.model, time.time()),
        )

    async def record_job(self, index: int, job: Job) -> None:
        """The task id (and latest state) as soon as they are known."""
        await self._run(
            "UPDATE jobs SET task_id = ?, provider = ?, state = ?, updated_at = ? WHERE idx = ?",
            (job.id, job.provider, job.state.value, time.time(), index),
        )

    async def record_outcome(
        self, index: int, *, state: str | None, path: Path | None, error: BaseException | None
    ) -> None:
        await self._run(
            "UPDATE jobs SET state = COALESCE(?, state), path = ?, error = ?, updated_at = ?"
            " WHERE idx = ?",
            (
                state,
                os.fspath(path) if path else None,
                f"{type(error).__name__}: {error}" if error else None,
                time.time(),
                index,
            ),
        )
