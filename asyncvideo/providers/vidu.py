"""Vidu over the generations format: resolution, movement, bgm and callbacks in ``metadata``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from .._models import VideoRequest
from ._base import CreateBody, ImageData, Provider, WireFormat, whole
from ._generations import generations_body

__all__ = ["ViduProvider"]


class ViduProvider(Provider):
    """``viduq1``. ``extra`` carries ``movement_amplitude``, ``bgm`` and ``payload``."""

    name: ClassVar[str] = "vidu"
    wire: ClassVar[WireFormat] = "generations"
    accepts: ClassVar[frozenset[str]] = frozenset(
        {"seconds", "size", "resolution", "seed", "image", "callback_url"}
    )
    callback_reference: ClassVar[str | None] = "payload"

    def build(self, request: VideoRequest, images: Mapping[str, ImageData]) -> CreateBody:
        metadata: dict[str, object] = {}
        if request.seconds is not None:
            metadata["duration"] = whole(request.seconds)
        if request.seed is not None:
            metadata["seed"] = request.seed
        if request.resolution is not None:
            metadata["resolution"] = request.resolution.strip().lower()
        if request.callback_url is not None:
            metadata["callback_url"] = request.callback_url
        return CreateBody(json=generations_body(request, images, metadata))
