"""Where a batch keeps what it must not lose: the :class:`JobStore` protocol and
the SQLite journal, its embedded default.

A batch talks to its store only through :class:`JobStore`, so another store
(PostgreSQL, for many workers sharing a batch) is a new class, not a change
to the batch.

A batch writes the *intent* (request fingerprint and idempotency key) before a
create is sent, the task id as soon as the gateway answers, and the outcome at
the end. Re-running the batch with the same journal resumes it: finished files
are verified and skipped, known tasks are polled, and only requests that were
never sent are created. Every row is committed before the batch goes on, so a
crash at any point loses no task id.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Protocol

import anyio
import attrs

from ._fs import output_error
from ._models import Job, VideoRequest

__all__ = ["JobStore", "JournalEntry", "SQLiteJournal", "fingerprint"]

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
    updated_at REAL NOT NULL,
    job TEXT
)
"""
# Journals written before the job snapshot was kept gain its column on open.
_ADD_JOB_COLUMN = "ALTER TABLE jobs ADD COLUMN job TEXT"


#: What a fingerprint covers: everything a request asks for, its idempotency key aside.
_FINGERPRINTED = tuple(f for f in attrs.fields(VideoRequest) if f.name != "idempotency_key")


def fingerprint(request: VideoRequest) -> str:
    """A stable digest of what a request asks for (its idempotency key aside)."""
    digest = hashlib.sha256()
    for field in _FINGERPRINTED:
        value = getattr(request, field.name)
        if isinstance(value, bytes):
            value = "sha256:" + hashlib.sha256(value).hexdigest()
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        elif field.name == "extra":
            value = sorted((str(k), repr(v)) for k, v in value.items())
        digest.update(f"{field.name}={value!r};".encode())
    return digest.hexdigest()


#: What SQLite and the OS raise when the disk, not the data, is at fault.
_FILE_SYSTEM_ERRORS = (OSError, sqlite3.OperationalError)


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
    #: the last job snapshot recorded (the library's JSON form, without ``raw``)
    job: Job | None = None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


class JobStore(Protocol):
    """What a batch records about its requests, so that a re-run resumes instead of paying twice.

    Rows are keyed by the request's index in the batch's input. Each call must
    be durable when it returns: the batch sends a create only after
    :meth:`record_intent` returned, and relies on :meth:`record_job` having
    kept the task id before it goes on. :class:`SQLiteJournal` is the default;
    pass another with ``generate_many(store=...)``. A store you pass is yours
    to close; the batch closes only the journal it opens from ``journal=``.

    Example:
        >>> async def main(client: Client) -> None:  # doctest: +SKIP
        ...     store = await SQLiteJournal.open("videos/journal.sqlite")
        ...     try:
        ...         async for outcome in client.generate_many(
        ...             requests, output_dir="videos", store=store
        ...         ):
        ...             print(outcome.index, outcome.path or outcome.error)
        ...     finally:
        ...         await store.close()
    """

    async def get(self, index: int) -> JournalEntry | None:
        """What is known about request ``index``, or ``None`` if it was never recorded."""
        ...

    async def record_intent(self, index: int, request: VideoRequest, key: str) -> None:
        """Before the create: request ``index`` is about to be sent with idempotency ``key``."""
        ...

    async def record_job(self, index: int, job: Job) -> None:
        """The task id (and latest state) of request ``index``, as soon as they are known."""
        ...

    async def record_outcome(
        self, index: int, *, state: str | None, path: Path | None, error: BaseException | None
    ) -> None:
        """How request ``index`` ended: its state, its file, or its error."""
        ...


class SQLiteJournal:
    """A :class:`JobStore` in one SQLite file (WAL mode). Use :meth:`open`.

    Calls run in a worker thread; a single connection is shared, with a
    one-thread limiter so SQLite sees one writer at a time.

    Example:
        >>> async def main() -> None:  # doctest: +SKIP
        ...     journal = await SQLiteJournal.open("videos/journal.sqlite")
        ...     print(await journal.get(0))
        ...     await journal.close()
    """

    def __init__(self, connection: sqlite3.Connection, path: str | None = None) -> None:
        self._db = connection
        self._path = path or "the journal"
        self._lock = anyio.CapacityLimiter(1)

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> SQLiteJournal:
        """Open (or create) the journal at ``path``, creating its folder if needed.

        Args:
            path: the SQLite file.
        """

        def connect() -> sqlite3.Connection:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(os.fspath(path), check_same_thread=False, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(_SCHEMA)
                columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
                if "job" not in columns:
                    db.execute(_ADD_JOB_COLUMN)
            except BaseException:
                db.close()
                raise
            return db

        try:
            return cls(await anyio.to_thread.run_sync(connect), os.fspath(path))
        except _FILE_SYSTEM_ERRORS as exc:
            # A file that is not SQLite is a DatabaseError, not one of these: the
            # caller's input, not the disk (ValidationError in a batch).
            raise output_error(exc, path, "open the journal") from exc

    async def close(self) -> None:
        """Close the connection; every recorded row is already committed."""
        await anyio.to_thread.run_sync(self._db.close, limiter=self._lock)

    async def _run(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        def execute() -> list[tuple[object, ...]]:
            return self._db.execute(sql, params).fetchall()

        with anyio.CancelScope(shield=True):  # a row half-decided by a cancel is a lost id
            try:
                rows = await anyio.to_thread.run_sync(execute, limiter=self._lock)
            except _FILE_SYSTEM_ERRORS as exc:  # a full or read-only disk, a vanished file
                raise output_error(exc, self._path, "write the journal") from exc
        return rows

    async def get(self, index: int) -> JournalEntry | None:
        """What is known about request ``index``, or ``None``."""
        rows = await self._run(
            "SELECT idx, fingerprint, idempotency_key, model, provider, task_id, state, path,"
            " error, job FROM jobs WHERE idx = ?",
            (index,),
        )
        if not rows:
            return None
        (idx, fp, key, model, provider, task_id, state, path, error, job) = rows[0]
        return JournalEntry(
            index=int(str(idx)),
            fingerprint=str(fp),
            idempotency_key=str(key),
            model=str(model),
            provider=_text(provider),
            task_id=_text(task_id),
            state=_text(state),
            path=_text(path),
            error=_text(error),
            job=Job.from_dict(json.loads(job)) if isinstance(job, str) else None,
        )

    async def record_intent(self, index: int, request: VideoRequest, key: str) -> None:
        """Before the create: this request is about to be sent with this key."""
        await self._run(
            "INSERT OR REPLACE INTO jobs (idx, fingerprint, idempotency_key, model, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (index, fingerprint(request), key, request.model, time.time()),
        )

    async def record_job(self, index: int, job: Job) -> None:
        """The task id (and latest state) as soon as they are known."""
        # The snapshot goes through the library's one converter; raw bodies stay out.
        snapshot = json.dumps({**job.to_dict(), "raw": {}}, separators=(",", ":"))
        await self._run(
            "UPDATE jobs SET task_id = ?, provider = ?, state = ?, job = ?, updated_at = ?"
            " WHERE idx = ?",
            (job.id, job.provider, job.state.value, snapshot, time.time(), index),
        )

    async def record_outcome(
        self, index: int, *, state: str | None, path: Path | None, error: BaseException | None
    ) -> None:
        """How request ``index`` ended."""
        await self._run(
            "UPDATE jobs SET state = COALESCE(?, state), path = COALESCE(?, path), error = ?,"
            " updated_at = ?"
            " WHERE idx = ?",
            (
                state,
                os.fspath(path) if path else None,
                f"{type(error).__name__}: {error}" if error else None,
                time.time(),
                index,
            ),
        )


# Resolve the annotations before the public module name hides where they live.
attrs.resolve_types(JournalEntry)
for _cls in (JobStore, JournalEntry, SQLiteJournal):
    _cls.__module__ = "asyncvideo"
