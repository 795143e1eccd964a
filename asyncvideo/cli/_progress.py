"""A batch on screen: a rich progress bar on a terminal, one line (or JSON object) per outcome."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from .. import (
    DownloadedEvent,
    Event,
    FailedEvent,
    Job,
    JobState,
    Outcome,
    ProgressEvent,
    StateChangedEvent,
    SubmittedEvent,
)
from ..errors import CreateOutcomeUnknown, JobTimeoutError
from ._output import Output, describe

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class BatchView:
    """Counts a batch's events and outcomes and shows them: a rich bar, or a line each.

    ``total`` (the requests expected, for the bar) may be set until the view is entered.
    """

    def __init__(self, out: Output, *, output_dir: Path, simulated: bool) -> None:
        self.out = out
        self.simulated = simulated
        self.total: int | None = None
        self.output_dir = output_dir
        self.started = time.monotonic()
        self.succeeded = 0
        self.failed = 0
        self.read_error = False
        # Live jobs by batch index: for the bar's counts, and so an interrupted batch can
        # still say which paid-for tasks are on the gateway.
        self.active: dict[int, Job] = {}
        self.submitted = 0
        self.downloaded = 0
        # Batch index -> line number, kept only while the request is in flight.
        self._lines: dict[int, int] = {}
        self._next_index = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    # -- lifecycle

    def __enter__(self) -> BatchView:
        if self.out.console is not None:
            self._progress = _progress_bar(self.out)
            self._progress.start()
            self._task = self._progress.add_task("batch", total=self.total, counts="")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._render()
        if self._progress is not None:
            self._progress.stop()
        self._summary()

    # -- input

    def line_submitted(self, number: int) -> None:
        self._lines[self._next_index] = number
        self._next_index += 1

    def bad_line(self, number: int, error: BaseException) -> None:
        self.failed += 1
        self._show(index=None, line=number, state="invalid", error=error)
        self._render()

    def read_failed(self, name: str, number: int, error: BaseException) -> None:
        self.read_error = True
        self.out.error(f"stopped reading {name} at line {number}: {describe(error)}")

    # -- events and outcomes

    def on_event(self, event: Event) -> None:
        if isinstance(event, SubmittedEvent):
            self.submitted += 1
            self.active[event.index] = event.job
        elif isinstance(event, StateChangedEvent | ProgressEvent):
            if event.index in self.active:
                self.active[event.index] = event.job
        elif isinstance(event, DownloadedEvent):
            self.downloaded += 1
            self.active.pop(event.index, None)
        elif isinstance(event, FailedEvent):
            self.active.pop(event.index, None)
        self._render()

    def outcome(self, outcome: Outcome) -> None:
        self.active.pop(outcome.index, None)
        line = self._lines.pop(outcome.index, None)
        if outcome.ok:
            self.succeeded += 1
        else:
            self.failed += 1
        self._show(
            index=outcome.index,
            line=line,
            state=outcome_state(outcome),
            task_id=None if outcome.job is None else outcome.job.id,
            model=outcome.request.model,
            path=outcome.path,
            error=outcome.error,
        )
        self._render()

    def interrupted(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._report_unfinished("interrupted")

    def stopped(self, error: BaseException) -> None:
        # The scheduler notes unfinished tasks on the error itself; main() prints notes.
        if not getattr(error, "__notes__", None):
            self._report_unfinished("stopped")

    def _report_unfinished(self, why: str) -> None:
        if not self.active:
            return
        if self.simulated:
            self.out.note(f"{why}: {len(self.active)} simulated task(s) abandoned")
            return
        self.out.note(
            f"{why}: {len(self.active)} submitted task(s) not downloaded yet; each can be "
            "fetched later with `asyncvideo download TASK_ID --model MODEL --wait`:"
        )
        for job in self.active.values():
            self.out.note(f"  {job.id}  {job.model}  {job.state.value}")

    # -- drawing

    def _show(
        self,
        *,
        index: int | None,
        line: int | None,
        state: str,
        task_id: str | None = None,
        model: str | None = None,
        path: Path | None = None,
        error: BaseException | None = None,
    ) -> None:
        if self.out.json:
            # Built by hand: a record of the batch's view, not of one library object.
            self.out.record(
                {
                    "index": index,
                    "line": line,
                    "state": state,
                    "ok": error is None and path is not None,
                    "task_id": task_id,
                    "model": model,
                    "path": None if path is None else str(path),
                    "error": None if error is None else describe(error),
                    "error_type": None if error is None else type(error).__name__,
                    # Present only for CreateOutcomeUnknown: the key to resolve it with.
                    "idempotency_key": getattr(error, "idempotency_key", None),
                }
            )
            return
        if self._progress is not None and error is None:
            return  # the bar shows successes; only failures get a line of their own
        self.out.line(
            f"{'-' if index is None else index:>6}  {state:<10}  {_detail(line, path, error)}"
        )

    def _render(self) -> None:
        if self._progress is None or self._task is None:
            return
        running = sum(job.state is JobState.RUNNING for job in self.active.values())
        # Partial credit for reported progress keeps the bar moving between downloads.
        partial = sum((job.progress or 0) for job in self.active.values()) / 100
        counts = (
            f"{self.submitted} submitted · {running} running · "
            f"{self.downloaded} downloaded · {self.failed} failed"
        )
        done = self.succeeded + self.failed
        self._progress.update(self._task, completed=done + partial, counts=counts)

    def _summary(self) -> None:
        wall = time.monotonic() - self.started
        text = (
            f"{self.succeeded} succeeded, {self.failed} failed in {wall:.1f} s "
            f"(output: {self.output_dir})"
        )
        if self.out.json:
            self.out.note(text)  # stdout stays one JSON object per line
        else:
            self.out.line(text)
        if self._next_index == 0 and self.failed == 0 and not self.read_error:
            self.out.note("asyncvideo: the prompt file has no prompts (blank lines and # skipped)")


def _detail(line: int | None, path: Path | None, error: BaseException | None) -> str:
    if error is None:
        return str(path)
    message = describe(error)
    # A bad line's error already names its file and line (read_requests says where).
    if line is None or f"line {line}: " in message:
        return message
    return f"line {line}: {message}"


def _progress_bar(out: Output) -> Progress:
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        SpinnerColumn(),
        BarColumn(bar_width=24),
        TaskProgressColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=out.console,
    )


def outcome_state(outcome: Outcome) -> str:
    """One word for how a request ended, for the outcome line and the JSON record."""
    if outcome.ok:
        return "succeeded"
    if isinstance(outcome.error, CreateOutcomeUnknown):
        return "unknown"  # the gateway may have made (and may bill) a task
    if outcome.job is None:
        return "rejected"  # never created on the gateway
    if isinstance(outcome.error, JobTimeoutError):
        return "timeout"
    if outcome.job.state is JobState.SUCCEEDED:
        return "download-failed"
    return str(outcome.job.state.value)
