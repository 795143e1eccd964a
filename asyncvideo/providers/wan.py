"""Alibaba Wan (Wanxiang) over the OpenAI videos format, options in ``metadata``.

Wan takes images only by URL: ``metadata.img_url`` for image-to-video,
``first_frame_url``/``last_frame_url`` for keyframes (``kf2v``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Literal

from .._models import VideoRequest
from ..errors import ValidationError
from ._base import (
    CreateBody,
    ImageData,
    Provider,
    WireFormat,
    metadata_json,
    openai_form,
    require_url,
    size_parts,
)

__all__ = ["WAN_TIERS", "WanProvider", "wan_kind"]

#: Output sizes per resolution tier, as the gateway documents them (width, height).
WAN_TIERS: Mapping[str, frozenset[tuple[int, int]]] = MappingProxyType(
    {
        "480P": frozenset({(832, 480), (480, 832), (624, 624)}),
        "720P": frozenset({(1280, 720), (720, 1280), (960, 960), (1088, 832), (832, 1088)}),
        "1080P": frozenset({(1920, 1080), (1080, 1920), (1440, 1440), (1632, 1248), (1248, 1632)}),
    }
)

WanKind = Literal["t2v", "i2v", "kf2v"]


def wan_kind(model: str) -> WanKind:
    """What a Wan model generates from, read from its name (``…-kf2v-…``, ``…-i2v-…``)."""
    name = model.lower()
    if "kf2v" in name:
        return "kf2v"
    if "i2v" in name:
        return "i2v"
    return "t2v"


def _tier(resolution: str) -> str:
    tier = resolution.strip().upper()
    if tier not in WAN_TIERS:
        raise ValidationError(
            f"Wan resolution must be one of {', '.join(WAN_TIERS)}, got {resolution!r}",
            field="resolution",
        )
    return tier


class WanProvider(Provider):
    """Wan 2.1 / 2.2 / 2.5: text-, image- and keyframe-to-video; audio on wan2.5."""

    name: ClassVar[str] = "wan"
    wire: ClassVar[WireFormat] = "openai"
    accepts: ClassVar[frozenset[str]] = frozenset(
        {
            "seconds",
            "size",
            "resolution",
            "seed",
            "negative_prompt",
            "image",
            "last_frame",
            "watermark",
            "prompt_extend",
            "audio",
        }
    )

    def check_model(self, request: VideoRequest) -> None:
        model, kind = request.model, wan_kind(request.model)
        if request.image is not None:
            require_url(model, "image", request.image)
        if request.last_frame is not None:
            require_url(model, "last_frame", request.last_frame)
        if kind == "t2v" and request.image is not None:
            raise ValidationError(
                f"{model} is text-to-video and takes no image; use an i2v model", field="image"
            )
        if kind in ("i2v", "kf2v") and request.image is None:
            raise ValidationError(f"{model} needs image (an http(s) URL)", field="image")
        if kind == "kf2v" and request.last_frame is None:
            raise ValidationError(
                f"{model} is keyframe-to-video and needs last_frame too", field="last_frame"
            )
        if kind != "kf2v" and request.last_frame is not None:
            raise ValidationError(
                f"{model} takes no last_frame; keyframes need a kf2v model", field="last_frame"
            )
        if request.audio and not model.lower().startswith("wan2.5"):
            raise ValidationError(
                f"audio is supported by wan2.5 models only, not {model}", field="audio"
            )
        tier = _tier(request.resolution) if request.resolution is not None else None
        if request.size is not None:
            size = size_parts(request.size)
            allowed = WAN_TIERS[tier] if tier else frozenset().union(*WAN_TIERS.values())
            if size not in allowed:
                shown = ", ".join(f"{w}*{h}" for w, h in sorted(allowed))
                raise ValidationError(
                    f"Wan size {size[0]}*{size[1]} is not offered"
                    f"{' at ' + tier if tier else ''}; choose one of: {shown}",
                    field="size",
                )

    def build(self, request: VideoRequest, images: Mapping[str, ImageData]) -> CreateBody:
        form = openai_form(request, size_separator="*")
        metadata: dict[str, object] = {}
        if "image" in images:
            key = "first_frame_url" if wan_kind(request.model) == "kf2v" else "img_url"
            metadata[key] = images["image"].url
        if "last_frame" in images:
            metadata["last_frame_url"] = images["last_frame"].url
        if request.resolution is not None:
            metadata["resolution"] = _tier(request.resolution)
        for name in ("watermark", "prompt_extend", "audio", "seed", "negative_prompt"):
            value = getattr(request, name)
            if value is not None:
                metadata[name] = value
        metadata.update(request.extra)
        if metadata:
            form["metadata"] = metadata_json(metadata)
        return CreateBody(form=form)
