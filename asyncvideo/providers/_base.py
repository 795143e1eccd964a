"""What every provider adapter is: pure translation between VideoRequest, wire and Job."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import ClassVar, Literal

import attrs

from .._models import Job, VideoRequest, parse_size
from ..errors import ValidationError
from ._parse import parse_task

__all__ = [
    "OPTIONAL_FIELDS",
    "CreateBody",
    "ImageData",
    "Provider",
    "WireFormat",
    "decode_data_url",
    "image_as_url_or_base64",
    "require_url",
]

#: ``"openai"``: multipart ``POST /v1/videos``;
#: ``"generations"``: JSON ``POST /v1/video/generations``.
WireFormat = Literal["openai", "generations"]

#: The VideoRequest fields a model may or may not take (prompt and model are always taken).
OPTIONAL_FIELDS = (
    "seconds",
    "size",
    "resolution",
    "fps",
    "seed",
    "negative_prompt",
    "image",
    "last_frame",
    "watermark",
    "prompt_extend",
    "audio",
    "callback_url",
)


@attrs.frozen
class ImageData:
    """An image ready to send: either a URL, or bytes read from a path or given raw."""

    url: str | None = None
    data: bytes | None = None
    filename: str = "image.png"
    content_type: str = "application/octet-stream"


@attrs.frozen(kw_only=True)
class CreateBody:
    """The create request an adapter asks the transport to send.

    Exactly one of ``json`` or ``form`` is set; ``files`` go with ``form``.
    """

    json: Mapping[str, object] | None = None
    form: Mapping[str, str] | None = None
    files: Mapping[str, ImageData] = attrs.field(factory=dict)


def decode_data_url(url: str) -> bytes | None:
    """The bytes of a base64 ``data:`` URL, or None if it is not one."""
    if not url.lower().startswith("data:") or ";base64," not in url[:100]:
        return None
    try:
        return base64.b64decode(url.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        return None


def require_url(model: str, field: str, value: object) -> str:
    """``value`` if it is an http(s) URL, else a clear error naming the model."""
    if isinstance(value, str) and value.lower().startswith(("http://", "https://")):
        return value
    raise ValidationError(
        f"{model} takes {field} only as an http(s) URL (the gateway does not accept "
        "uploads for it); upload the image somewhere reachable and pass its URL",
        field=field,
    )


def image_as_url_or_base64(image: ImageData) -> str:
    """The generations format takes an image as a URL or as plain base64."""
    if image.url is not None:
        return image.url
    return base64.b64encode(image.data or b"").decode("ascii")


class Provider:
    """Base adapter: subclasses set ``name``, ``wire``, ``accepts`` and build bodies.

    Adapters are pure: no I/O, so they are tested without a network.
    """

    name: ClassVar[str]
    wire: ClassVar[WireFormat]
    #: which OPTIONAL_FIELDS this provider can take at all
    accepts: ClassVar[frozenset[str]]
    #: the ``metadata`` field the provider hands back unchanged in its callback
    #: (Vidu ``payload``, Kling ``external_task_id``); None if it has none
    callback_reference: ClassVar[str | None] = None

    @property
    def takes_callbacks(self) -> bool:
        """Whether a create can name a callback URL (``callback_url`` in ``accepts``)."""
        return "callback_url" in self.accepts

    def check(self, request: VideoRequest) -> None:
        """Refuse a request this provider cannot take, before anything is read or sent."""
        given = [name for name in OPTIONAL_FIELDS if getattr(request, name) is not None]
        refused = [name for name in given if name not in self.accepts]
        if refused:
            raise ValidationError(
                f"{request.model} ({self.name}) does not take {', '.join(refused)}; "
                f"it takes: {', '.join(sorted(self.accepts)) or 'prompt only'}",
                field=refused[0],
            )
        if request.last_frame is not None and request.image is None:
            raise ValidationError("last_frame needs image (the first frame) too", field="image")
        self.check_model(request)

    def check_model(self, request: VideoRequest) -> None:
        """Model-specific rules (tiers, required images); none by default."""

    def build(self, request: VideoRequest, images: Mapping[str, ImageData]) -> CreateBody:
        """The create body; ``images`` holds the loaded ``image``/``last_frame``."""
        raise NotImplementedError

    def with_callback(self, body: CreateBody, url: str, reference: str) -> CreateBody:
        """``body`` with ``metadata.callback_url`` and our ``reference`` of the job added.

        What the request's ``extra`` already put there wins: a user who sets
        ``payload`` himself keeps it.
        """
        if body.json is None or not self.takes_callbacks:
            return body
        given = body.json.get("metadata")
        metadata: dict[str, object] = dict(given) if isinstance(given, Mapping) else {}
        metadata.setdefault("callback_url", url)
        if self.callback_reference is not None:
            metadata.setdefault(self.callback_reference, reference)
        return attrs.evolve(body, json={**body.json, "metadata": metadata})

    def parse(
        self,
        payload: object,
        *,
        model: str,
        task_id: str | None = None,
        previous: Job | None = None,
    ) -> Job:
        """A job snapshot from a create or status answer."""
        return parse_task(
            payload, model=model, provider=self.name, task_id=task_id, previous=previous
        )


def metadata_json(metadata: Mapping[str, object]) -> str:
    return json.dumps(dict(metadata), ensure_ascii=False, separators=(",", ":"))


def whole(seconds: float) -> int | float:
    """``5.0`` -> ``5``: gateways parse ``5``, and some choke on ``5.0``."""
    return int(seconds) if float(seconds).is_integer() else seconds


def openai_form(request: VideoRequest, *, size_separator: str) -> dict[str, str]:
    """The text fields every OpenAI-format create starts with: prompt, model, seconds, size.

    ``size_separator`` is ``"x"`` for Sora and ``"*"`` for Wan (``1920*1080``).
    """
    form = {"prompt": request.prompt, "model": request.model}
    if request.seconds is not None:
        form["seconds"] = str(whole(request.seconds))
    if request.size is not None:
        width, height = size_parts(request.size)
        form["size"] = f"{width}{size_separator}{height}"
    return form


def size_parts(size: str) -> tuple[int, int]:
    """Width and height of a size that VideoRequest already validated."""
    parts = parse_size(size)
    if parts is None:  # pragma: no cover - VideoRequest refuses these
        raise ValidationError(f"size must look like '1920x1080', got {size!r}", field="size")
    return parts
