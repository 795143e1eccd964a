"""Sora over the OpenAI videos format: multipart, the image as a file upload."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from .._models import VideoRequest
from ..errors import ValidationError
from ._base import (
    CreateBody,
    ImageData,
    Provider,
    WireFormat,
    metadata_json,
    openai_form,
)

__all__ = ["SoraProvider"]


class SoraProvider(Provider):
    """``sora-2``: ``prompt, model, seconds, size, input_reference, metadata``."""

    name: ClassVar[str] = "sora"
    wire: ClassVar[WireFormat] = "openai"
    accepts: ClassVar[frozenset[str]] = frozenset({"seconds", "size", "image"})

    def check_model(self, request: VideoRequest) -> None:
        image = request.image
        if isinstance(image, str) and image.lower().startswith(("http://", "https://")):
            raise ValidationError(
                f"{request.model} takes the image as an uploaded file (input_reference); "
                "pass a path, bytes or a data: URL, not an http(s) URL",
                field="image",
            )

    def build(self, request: VideoRequest, images: Mapping[str, ImageData]) -> CreateBody:
        form = openai_form(request, size_separator="x")
        if request.extra:
            form["metadata"] = metadata_json(request.extra)
        files = {"input_reference": images["image"]} if "image" in images else {}
        return CreateBody(form=form, files=files)
