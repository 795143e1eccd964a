"""Kling over the generations format; the last frame goes in ``metadata.image_tail``.

A callback URL goes in ``metadata.callback_url``: the new-api relay decodes
``metadata`` over Kling's native create body, which has ``callback_url`` and
``external_task_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from .._models import VideoRequest
from ._base import CreateBody, ImageData, Provider, WireFormat, image_as_url_or_base64
from ._generations import generations_body

__all__ = ["KlingProvider"]


class KlingProvider(Provider):
    """``kling-v1``, ``kling-v2-master``: text or image to video, optional tail frame."""

    name: ClassVar[str] = "kling"
    wire: ClassVar[WireFormat] = "generations"
    accepts: ClassVar[frozenset[str]] = frozenset(
        {"seconds", "size", "fps", "seed", "negative_prompt", "image", "last_frame", "callback_url"}
    )
    #: Kling's own API echoes ``external_task_id`` in its callback (new-api maps
    #: ``metadata`` onto Kling's create body, so both fields reach it)
    callback_reference: ClassVar[str | None] = "external_task_id"

    def build(self, request: VideoRequest, images: Mapping[str, ImageData]) -> CreateBody:
        metadata: dict[str, object] = {}
        if request.seed is not None:
            metadata["seed"] = request.seed
        if request.negative_prompt is not None:
            metadata["negative_prompt"] = request.negative_prompt
        if "last_frame" in images:
            metadata["image_tail"] = image_as_url_or_base64(images["last_frame"])
        if request.callback_url is not None:
            metadata["callback_url"] = request.callback_url
        return CreateBody(json=generations_body(request, images, metadata))
