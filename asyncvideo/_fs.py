"""File-system failures as the SDK's one error for them, :class:`~asyncvideo.errors.OutputError`."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import OutputError

__all__ = ["output_error"]


def output_error(
    exc: Exception, path: str | os.PathLike[str], doing: str, task_id: str | None = None
) -> OutputError:
    """``exc`` (an ``OSError``, or SQLite's word for one) as an error naming ``path``.

    The errno of an ``OSError`` is kept, so code that checks ``ENOSPC`` still can.

    Example:
        >>> str(output_error(OSError(28, "No space left on device"), "v.mp4", "write"))
        "cannot write 'v.mp4': No space left on device"
    """
    shown = os.fspath(Path(path))
    strerror = exc.strerror if isinstance(exc, OSError) else None
    error = OutputError(f"cannot {doing} {shown!r}: {strerror or exc}", path=shown, task_id=task_id)
    if isinstance(exc, OSError):
        error.errno, error.strerror = exc.errno, exc.strerror
    return error
