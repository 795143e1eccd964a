"""Image inputs (URL, path or bytes) made ready for a provider's wire format."""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

import anyio

from ._models import ImageInput, is_url
from .errors import ValidationError
from .providers import ImageData, WireFormat
from .providers._base import decode_data_url

__all__ = ["load_image"]

_IMAGE_SIGNATURES = (
    (b"\x89PNG", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"GIF8", "image/gif", ".gif"),
    (b"RIFF", "image/webp", ".webp"),
)


def _image_from_bytes(data: bytes, name: str, filename: str | None = None) -> ImageData:
    for signature, content_type, suffix in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return ImageData(
                data=data, filename=filename or f"{name}{suffix}", content_type=content_type
            )
    guessed = mimetypes.guess_type(filename or "")[0] or "application/octet-stream"
    return ImageData(data=data, filename=filename or name, content_type=guessed)


async def load_image(name: str, value: ImageInput, *, wire: WireFormat) -> ImageData:
    """An image input ready to send: a URL as is, bytes or a file's content with its type.

    A base64 ``data:`` URL is uploaded as bytes on the OpenAI format (it takes
    files, not data URLs). A missing, unreadable or empty file is a
    :class:`ValidationError` before anything is sent.
    """
    if isinstance(value, str) and is_url(value):
        decoded = decode_data_url(value) if wire == "openai" else None
        return _image_from_bytes(decoded, name) if decoded is not None else ImageData(url=value)
    if isinstance(value, bytes):
        if not value:
            raise ValidationError(f"{name} is empty", field=name)
        return _image_from_bytes(value, name)
    path = anyio.Path(os.fspath(value))
    try:
        data = await path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise ValidationError(
            f"{name} file {os.fspath(value)!r} does not exist", field=name
        ) from exc
    except PermissionError as exc:
        raise ValidationError(
            f"{name} file {os.fspath(value)!r} is not readable", field=name
        ) from exc
    if not data:
        raise ValidationError(f"{name} file {os.fspath(value)!r} is empty", field=name)
    return _image_from_bytes(data, name, filename=Path(os.fspath(value)).name)
