"""Jimeng over the generations format: ``req_key``, ``image_urls``, ``aspect_ratio``."""

from __future__ import annotations

from collections.abc import Mapping
from math import gcd
from typing import ClassVar

from .._models import VideoRequest
from ._base import CreateBody, ImageData, Provider, WireFormat, size_parts
from ._generations import generations_body

__all__ = ["JimengProvider", "aspect_ratio"]


def aspect_ratio(size: str) -> str:
    """``"1920x1080"`` -> ``"16:9"``."""
    width, height = size_parts(size)
    divisor = gcd(width, height)
    return f"{width // divisor}:{height // divisor}"


class JimengProvider(Provider):
    """``jimeng_vgfm_t2v_l20``, ``jimeng_vgfm_i2v_l20``."""

    name: ClassVar[str] = "jimeng"
    wire: ClassVar[WireFormat] = "generations"
    accepts: ClassVar[frozenset[str]] = frozenset({"seconds", "size", "seed", "image"})

    def build(self, request: VideoRequest, images: Mapping[str, ImageData]) -> CreateBody:
        # Jimeng's upstream API names the model by req_key.
        metadata: dict[str, object] = {"req_key": request.model}
        image = images.get("image")
        if image is not None and image.url is not None:
            metadata["image_urls"] = [image.url]
        if request.size is not None:
            metadata["aspect_ratio"] = aspect_ratio(request.size)
        return CreateBody(json=generations_body(request, images, metadata))
