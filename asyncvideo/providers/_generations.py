"""The shared JSON body of ``POST /v1/video/generations`` (Kling, Jimeng, Vidu)."""

from __future__ import annotations

from collections.abc import Mapping

from .._models import VideoRequest
from ._base import ImageData, image_as_url_or_base64, size_parts, whole

__all__ = ["generations_body"]


def generations_body(
    request: VideoRequest,
    images: Mapping[str, ImageData],
    metadata: Mapping[str, object],
) -> dict[str, object]:
    """``model, prompt, duration, fps, width, height, size, image, seed, metadata``.

    ``request.extra`` is merged over ``metadata`` so users can pass any
    provider field the SDK does not model yet.
    """
    body: dict[str, object] = {"model": request.model, "prompt": request.prompt}
    if request.seconds is not None:
        body["duration"] = whole(request.seconds)
    if request.fps is not None:
        body["fps"] = request.fps
    if request.size is not None:
        width, height = size_parts(request.size)
        body.update(width=width, height=height, size=f"{width}x{height}")
    if "image" in images:
        body["image"] = image_as_url_or_base64(images["image"])
    if request.seed is not None:
        body["seed"] = request.seed
    merged = {**metadata, **request.extra}
    if merged:
        body["metadata"] = merged
    return body
