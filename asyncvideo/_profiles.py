"""Gateway profiles: which paths a gateway family serves, as data."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import attrs

from ._public import publish
from .errors import ConfigurationError
from .providers import WireFormat

__all__ = ["GATEWAYS", "Endpoints", "GatewayProfile", "resolve_gateway"]


@attrs.frozen(kw_only=True)
class Endpoints:
    """Paths for one wire format. ``{id}`` stands for the task id.

    Args:
        create: where a create is POSTed.
        status: where a task is queried.
        content: where the video is streamed from, if the gateway has such an
            endpoint (else only the task's ``url`` is used).
    """

    create: str
    status: str
    content: str | None = None


@attrs.frozen(kw_only=True)
class GatewayProfile:
    """How one gateway family lays out its endpoints.

    Args:
        name: a label for logs and reprs.
        openai: endpoints of the OpenAI videos format (Sora, Wan).
        generations: endpoints of the generations format (Kling, Jimeng, Vidu).
        honours_idempotency_keys: set only when the gateway is known to
            deduplicate creates by ``Idempotency-Key``; then an ambiguous
            create is retried with the same key instead of raising
            ``CreateOutcomeUnknown``.
    """

    name: str
    openai: Endpoints
    generations: Endpoints
    honours_idempotency_keys: bool = False

    def endpoints(self, wire: WireFormat) -> Endpoints:
        return self.openai if wire == "openai" else self.generations


GATEWAYS: Mapping[str, GatewayProfile] = MappingProxyType(
    {
        # The layout of the 88API-style documents (seeds 000-002).
        "default": GatewayProfile(
            name="default",
            openai=Endpoints(
                create="/v1/videos",
                status="/v1/videos/{id}",
                content="/v1/videos/{id}/content",
            ),
            generations=Endpoints(
                create="/v1/video/generations", status="/v1/video/generations/{id}"
            ),
        ),
        # The generation.task family (seed 003): one query path for every model.
        "toapis": GatewayProfile(
            name="toapis",
            openai=Endpoints(create="/v1/videos", status="/v1/videos/generations/{id}"),
            generations=Endpoints(
                create="/v1/videos/generations", status="/v1/videos/generations/{id}"
            ),
        ),
    }
)


def resolve_gateway(gateway: str | GatewayProfile) -> GatewayProfile:
    if isinstance(gateway, GatewayProfile):
        return gateway
    profile = GATEWAYS.get(gateway)
    if profile is None:
        raise ConfigurationError(
            f"unknown gateway profile {gateway!r}; built in: {', '.join(GATEWAYS)}"
        )
    return profile


publish(Endpoints, GatewayProfile)
