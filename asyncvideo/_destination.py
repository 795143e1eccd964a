"""Where videos go, checked before anything is paid for.

A clip that cannot be kept is a clip paid for and lost, so ``generate`` and
``generate_many`` check their destination before the first create: the folder
exists (it is created if missing), it is a folder, a file can be written in it,
and it has room for at least one clip (:data:`MIN_FREE_BYTES`). Anything else is
an :class:`~asyncvideo.errors.OutputError` with the path, and no request is sent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import anyio

from .errors import OutputError

__all__ = ["MIN_FREE_BYTES", "check_output", "check_output_dir", "names_folder"]

#: Free space a destination needs before a create: one long high-resolution clip
#: is tens of megabytes, so less than this cannot be relied on to hold even one.
MIN_FREE_BYTES = 64 * 1024 * 1024


def names_folder(dest: str | os.PathLike[str]) -> bool:
    """Whether ``dest`` means a folder: it ends with a separator, or is an existing folder.

    ``Path("new/")`` drops the separator, so the text is looked at first:
    ``--output new/`` asks for ``new/<task id>.mp4``, never a file named ``new``.
    """
    text = os.fspath(dest)
    separators = tuple(sep for sep in (os.sep, os.altsep) if sep)
    return text.endswith(separators) or os.path.isdir(text)


def _prepare_folder(folder: Path, min_free: int) -> None:
    where = os.fspath(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way (the folder or a parent), read-only, denied
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError | NotADirectoryError):
            reason = "it, or a folder above it, is a file"
        raise OutputError(f"cannot use {where} as the output folder: {reason}", path=where) from exc
    if not folder.is_dir():
        raise OutputError(f"cannot use {where} as the output folder: not a folder", path=where)
    try:
        # Permission bits do not tell (root, ACLs, read-only mounts): a real file does.
        handle, probe = tempfile.mkstemp(prefix=".asyncvideo-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write to {where}: {exc.strerror or exc}", path=where) from exc
    free = shutil.disk_usage(folder).free
    if free < min_free:
        raise OutputError(
            f"{where} has {free // 2**20} MiB free, less than the {min_free // 2**20} MiB "
            "one clip may need",
            path=where,
        )


async def check_output_dir(
    folder: str | os.PathLike[str], *, min_free: int = MIN_FREE_BYTES
) -> Path:
    """Make sure videos can be saved in ``folder`` (created if missing); returns it.

    Raises:
        OutputError: not a folder (or a parent is a file), not writable, or
            less than ``min_free`` bytes free.
    """
    path = Path(folder)
    await anyio.to_thread.run_sync(_prepare_folder, path, min_free)
    return path


async def check_output(dest: str | os.PathLike[str], *, min_free: int = MIN_FREE_BYTES) -> Path:
    """Check a ``generate``/``download`` destination before paying for its video.

    ``dest`` is a file, or a folder for ``<task id>.mp4`` (an existing folder,
    or a path ending with a separator, which is then created). The folder the
    file will land in is created if missing and checked as
    :func:`check_output_dir` does; the folder is returned.

    Args:
        dest: the file or folder the video will be saved to.
        min_free: bytes the folder's file system must have free.

    Raises:
        OutputError: the video could not be kept there.

    Example:
        >>> await check_output("videos/")  # doctest: +SKIP
        PosixPath('videos')
    """
    return await anyio.to_thread.run_sync(_prepare_destination, dest, min_free)


def _prepare_destination(dest: str | os.PathLike[str], min_free: int) -> Path:
    # One thread hop for the whole check: whether dest names a folder is a stat too.
    folder = Path(dest) if names_folder(dest) else Path(dest).parent
    _prepare_folder(folder, min_free)
    return folder
