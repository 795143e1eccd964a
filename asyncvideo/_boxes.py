"""Checking an MP4 by its top-level boxes: on disk, or as its bytes stream past.

An ISO base media file is a run of boxes, each starting with its size and a
four-letter type. A body cut short (a close-delimited or gzip-encoded body has
no length to check) ends inside its last box, so the boxes reach past the
bytes; a whole file that is still no video lacks the ``moov`` box no player
can do without. Both checks read only box headers, never the media.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from .errors import IntegrityError

__all__ = ["BoxWalk", "is_complete_mp4", "looks_like_mp4", "mp4_boxes_end"]

# Real MP4s have a handful (fragmented ones a few hundred); this bounds a hostile file.
_MAX_TOP_LEVEL_BOXES = 100_000
_LARGE_HEADER = 16  # size 1: a 64-bit size follows the type
_HEADER = 8


def looks_like_mp4(head: bytes) -> bool:
    """True when ``head`` starts with an ISO base media ``ftyp`` box."""
    return len(head) >= _HEADER and head[4:8] == b"ftyp"


def _box_end(header: bytes, position: int) -> int | None:
    """Where the box whose header starts at ``position`` ends; 0 when it runs to the end
    of the file, ``None`` while ``header`` is too short to say.

    Raises:
        IntegrityError: a size no MP4 box has.
    """
    if len(header) < _HEADER:
        return None
    box_size = int.from_bytes(header[:4])  # big-endian, as MP4 and from_bytes default
    if box_size == 0:
        return 0
    if box_size == 1:
        if len(header) < _LARGE_HEADER:
            return None
        box_size = int.from_bytes(header[8:_LARGE_HEADER])
        if box_size < _LARGE_HEADER:
            raise IntegrityError(f"MP4 box at byte {position} has a size of {box_size}")
    elif box_size < _HEADER:
        raise IntegrityError(f"MP4 box at byte {position} has a size of {box_size}")
    return position + box_size


def _cut_header_end(header: bytes, position: int) -> int:
    """Where a file cut inside the header at ``position`` would have had to reach.

    A plain header is whole at 8 bytes, so one cut after 8 is a 64-bit one.
    """
    return position + (_LARGE_HEADER if len(header) >= _HEADER else _HEADER)


def mp4_boxes_end(read_at: Callable[[int, int], bytes], size: int) -> int:
    """Where the file's top-level boxes say it ends (``size`` when it is whole).

    Raises:
        IntegrityError: a box header no MP4 has.
    """
    return _walk_boxes(read_at, size)[0]


def _walk_boxes(read_at: Callable[[int, int], bytes], size: int) -> tuple[int, set[bytes]]:
    """Where the top-level boxes end, and the types of those that fit in ``size``."""
    position = 0
    kinds: set[bytes] = set()
    for _ in range(_MAX_TOP_LEVEL_BOXES):
        if position >= size:
            return position, kinds
        header = read_at(_LARGE_HEADER, position)
        end = _box_end(header, position)
        if end is None:
            return _cut_header_end(header, position), kinds
        kinds.add(header[4:8])
        if end == 0:
            return size, kinds
        position = end
    raise IntegrityError(f"more than {_MAX_TOP_LEVEL_BOXES} top-level MP4 boxes")


def is_complete_mp4(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a whole MP4 (boxes add up, ``moov`` present): blocking I/O."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            end, kinds = _walk_boxes(functools.partial(os.pread, handle.fileno()), size)
    except (OSError, IntegrityError):
        return False
    return end == size and b"ftyp" in kinds and b"moov" in kinds


class BoxWalk:
    """Follows the top-level boxes of bytes fed in order, holding one box header at most.

    The same reading as :func:`mp4_boxes_end`, for a body that is never on disk
    (a stream) or is checked as it arrives: most chunks fall inside a box and
    cost one comparison.

    Example:
        >>> walk = BoxWalk()
        >>> walk.feed(b"\\0\\0\\0\\x08ftyp\\0\\0\\0\\x08mo")
        >>> walk.end(), walk.kinds == {b"ftyp"}
        (16, True)
    """

    __slots__ = ("_box", "_boxes", "_header", "_to_end", "kinds", "seen")

    def __init__(self) -> None:
        self.seen = 0  # bytes fed so far
        self.kinds: set[bytes] = set()
        self._box = 0  # where the box being crossed starts
        self._header = b""  # its header bytes received so far
        self._boxes = 0
        self._to_end = False

    def feed(self, chunk: bytes) -> None:
        """The next bytes of the body.

        Raises:
            IntegrityError: a box header no MP4 has, or too many boxes.
        """
        base = self.seen
        self.seen += len(chunk)
        while not self._to_end and self._box + len(self._header) < self.seen:
            begin = self._box + len(self._header) - base
            self._header += chunk[begin : begin + _LARGE_HEADER - len(self._header)]
            end = _box_end(self._header, self._box)
            if end is None:
                return  # the header goes on in the next chunk
            self.kinds.add(self._header[4:8])
            self._boxes += 1
            if self._boxes > _MAX_TOP_LEVEL_BOXES:
                raise IntegrityError(f"more than {_MAX_TOP_LEVEL_BOXES} top-level MP4 boxes")
            if end == 0:
                self._to_end = True
            self._box, self._header = end, b""

    def end(self) -> int:
        """Where the boxes say the body ends (``seen`` when the bytes fed are whole)."""
        if self._to_end:
            return self.seen
        if self._box >= self.seen:
            return self._box
        return _cut_header_end(self._header, self._box)
