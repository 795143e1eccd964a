"""Deterministic, structurally valid MP4 bytes, cheap at any size.

A served video is ``head + body``: the head (an ``ftyp`` box, a ``free`` box
holding a digest of the seed and a minimal ``moov`` box, which every MP4 needs and
the SDK checks for) differs per task, the body (the ``mdat`` box) is
built once per size and shared, so 10,000 tasks or a 32 MB file cost one
allocation, not one per task.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Iterator

import attrs

__all__ = ["MIN_MP4_SIZE", "VideoFile", "make_mp4", "video_file"]

# ftyp: size 0x20, major brand isom, minor version 0x200, four compatible brands.
_FTYP = (0x20).to_bytes(4, "big") + b"ftypisom" + (0x200).to_bytes(4, "big") + b"isomiso2avc1mp41"
_FREE_HEADER = (8 + 32).to_bytes(4, "big") + b"free"
# mvhd, version 0: no dates, timescale 1000, duration 0, rate 1.0, volume 1.0, the
# identity matrix, next track id 1. Well formed, not playable (no trak).
_MATRIX = b"".join(n.to_bytes(4, "big") for n in (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000))
_MVHD_PAYLOAD = (
    bytes(4)  # version, flags
    + bytes(8)  # creation, modification time
    + (1000).to_bytes(4, "big")
    + bytes(4)  # duration
    + (0x10000).to_bytes(4, "big")
    + (0x100).to_bytes(2, "big")
    + bytes(10)  # reserved
    + _MATRIX
    + bytes(24)  # pre_defined
    + (1).to_bytes(4, "big")
)
_MVHD = (8 + len(_MVHD_PAYLOAD)).to_bytes(4, "big") + b"mvhd" + _MVHD_PAYLOAD
_MOOV = (8 + len(_MVHD)).to_bytes(4, "big") + b"moov" + _MVHD
_HEAD_SIZE = len(_FTYP) + len(_FREE_HEADER) + 32 + len(_MOOV)
_MDAT_HEADER = 8
MIN_MP4_SIZE = _HEAD_SIZE + _MDAT_HEADER
_BLOCK = random.Random(0x6D646174).randbytes(64 * 1024)


@attrs.frozen
class VideoFile:
    """One task's video: a small per-task head followed by a shared body."""

    head: bytes
    body: bytes
    etag: str

    @property
    def size(self) -> int:
        return len(self.head) + len(self.body)

    def to_bytes(self) -> bytes:
        return self.head + self.body

    def slices(self, start: int, end: int, chunk: int) -> Iterator[memoryview]:
        """Views of bytes ``[start, end)`` at most ``chunk`` long, without copying."""
        head_len = len(self.head)
        if start < head_len:
            yield memoryview(self.head)[start : min(end, head_len)]
            start = head_len
        body = memoryview(self.body)
        for offset in range(start - head_len, end - head_len, chunk):
            yield body[offset : min(offset + chunk, end - head_len)]


@functools.lru_cache(maxsize=8)
def _body(size: int) -> bytes:
    payload = size - _HEAD_SIZE - _MDAT_HEADER
    if size - _HEAD_SIZE > 0xFFFFFFFF:
        # A 32-bit box size cannot hold it: size 1 announces a 64-bit size.
        payload -= 8
        header = (1).to_bytes(4, "big") + b"mdat" + (size - _HEAD_SIZE).to_bytes(8, "big")
    else:
        header = (size - _HEAD_SIZE).to_bytes(4, "big") + b"mdat"
    count, rest = divmod(payload, len(_BLOCK))
    return header + _BLOCK * count + _BLOCK[:rest]


def _seed_bytes(seed: bytes | str) -> bytes:
    return seed.encode() if isinstance(seed, str) else seed


def video_file(size: int, seed: bytes | str = b"") -> VideoFile:
    """The video of ``size`` bytes for ``seed`` (a task id), sharing its body."""
    if size < MIN_MP4_SIZE:
        raise ValueError(f"an MP4 needs at least {MIN_MP4_SIZE} bytes, got {size}")
    digest = hashlib.sha256(_seed_bytes(seed)).digest()
    return VideoFile(
        head=_FTYP + _FREE_HEADER + digest + _MOOV,
        body=_body(size),
        etag=f'"{digest[:8].hex()}-{size:x}"',
    )


def make_mp4(size: int, seed: bytes | str = b"") -> bytes:
    """Deterministic MP4 bytes: ``ftyp`` + ``free`` + ``moov`` + ``mdat`` boxes, ``size`` long.

    Args:
        size: total length in bytes (at least ``MIN_MP4_SIZE``, 196).
        seed: varies the bytes; the same seed and size give the same bytes.

    Example:
        >>> data = make_mp4(1024, seed="video_1")
        >>> data[4:8], len(data)
        (b'ftyp', 1024)
    """
    return video_file(size, seed).to_bytes()
