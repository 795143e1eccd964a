"""The MP4 top-level box walk: on disk (``is_complete_mp4``, ``mp4_boxes_end``) and as
bytes stream past (``BoxWalk``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncvideo import errors
from asyncvideo._boxes import BoxWalk, is_complete_mp4, looks_like_mp4, mp4_boxes_end
from asyncvideo.testing import make_mp4

VIDEO = make_mp4(5_000, "boxes")


def box(kind: bytes, payload: bytes = b"", *, size: int | None = None) -> bytes:
    """One MP4 box; ``size`` overrides the length its header announces."""
    return (len(payload) + 8 if size is None else size).to_bytes(4, "big") + kind + payload


def large_box(kind: bytes, size: int) -> bytes:
    """The 16-byte header of a box whose size is in the 64-bit field after its type."""
    return (1).to_bytes(4, "big") + kind + size.to_bytes(8, "big")


FTYP = box(b"ftyp", b"isom\0\0\0\0")


def ends(data: bytes) -> list[int]:
    """Where the boxes end, read from disk and walked in one chunk and byte by byte."""
    whole, by_byte = BoxWalk(), BoxWalk()
    whole.feed(data)
    for index in range(len(data)):
        by_byte.feed(data[index : index + 1])
    on_disk = mp4_boxes_end(lambda count, at: data[at : at + count], len(data))
    return [on_disk, whole.end(), by_byte.end()]


def test_an_mp4_is_told_by_its_first_box() -> None:
    assert looks_like_mp4(box(b"ftyp"))
    assert looks_like_mp4(VIDEO)
    assert not looks_like_mp4(box(b"ftyp")[:7])
    assert not looks_like_mp4(box(b"moov"))
    assert not looks_like_mp4(b"<html>ftyp</html>")


@pytest.mark.parametrize(
    ("data", "end"),
    [
        (b"", 0),
        (FTYP, len(FTYP)),
        (FTYP + b"\0\0", len(FTYP) + 8),  # cut in a size: a header is 8 bytes at least
        (FTYP + box(b"mdat", b"x" * 100)[:5], len(FTYP) + 8),
        (FTYP + (1).to_bytes(4, "big"), len(FTYP) + 8),  # not known to be 64-bit yet
        (FTYP + large_box(b"mdat", 116)[:8], len(FTYP) + 16),  # 64-bit: 16 bytes
        (FTYP + large_box(b"mdat", 116)[:15], len(FTYP) + 16),
        (FTYP + large_box(b"mdat", 116), len(FTYP) + 116),
        # every byte of the 64-bit size counts, the highest too
        (FTYP + large_box(b"mdat", 2**56 + 24), len(FTYP) + 2**56 + 24),
        (FTYP + box(b"mdat", b"x" * 100, size=0), len(FTYP) + 108),  # runs to the end
    ],
)
def test_where_the_boxes_end_exactly(data: bytes, end: int) -> None:
    assert ends(data) == [end, end, end]


def test_a_stream_of_boxes_counts_them_up_to_the_bound() -> None:
    walk = BoxWalk()
    walk.feed(box(b"free") * 100_000)
    assert (walk.end(), walk.kinds) == (800_000, {b"free"})
    with pytest.raises(errors.IntegrityError, match=r"^more than 100000 top-level MP4 boxes$"):
        walk.feed(box(b"free"))


def test_a_box_running_to_the_end_takes_every_later_byte() -> None:
    walk = BoxWalk()
    walk.feed(FTYP + box(b"mdat", size=0))
    walk.feed(box(b"moov", size=7))  # inside mdat: not a header, not checked
    assert (walk.end(), walk.seen, walk.kinds) == (
        len(FTYP) + 16,
        len(FTYP) + 16,
        {b"ftyp", b"mdat"},
    )


@pytest.mark.parametrize(
    ("data", "complete"),
    [
        (VIDEO, True),
        (FTYP + box(b"moov") + box(b"mdat", b"x" * 100, size=0), True),
        (VIDEO[:-1], False),  # cut short
        (VIDEO + b"\0\0\0", False),  # a cut header after the last box
        (FTYP + box(b"mdat", b"x" * 100), False),  # whole, but no moov
        (box(b"free") + box(b"moov"), False),  # no ftyp
        (FTYP + box(b"free", size=7) + box(b"moov"), False),  # a size no box has
        (b"", False),
    ],
)
def test_a_file_on_disk_is_whole_when_its_boxes_add_up(
    tmp_path: Path, data: bytes, complete: bool
) -> None:
    path = tmp_path / "v.mp4"
    path.write_bytes(data)
    assert is_complete_mp4(path) is complete
    assert is_complete_mp4(str(path)) is complete


def test_a_file_that_cannot_be_read_is_not_whole(tmp_path: Path) -> None:
    assert not is_complete_mp4(tmp_path / "missing.mp4")
    assert not is_complete_mp4(tmp_path)  # a directory
