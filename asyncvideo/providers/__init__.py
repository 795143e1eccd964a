"""Provider adapters and model routing.

Routing is data: a table of model-name prefixes, longest match first, which a
client can extend (``Client(routes={"kling-v3": "kling"})``) and a request can
bypass (``VideoRequest(provider="vidu")``). A new model name works without a
release.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ..errors import ValidationError
from ._base import CreateBody, ImageData, Provider, WireFormat
from .jimeng import JimengProvider
from .kling import KlingProvider
from .sora import SoraProvider
from .vidu import ViduProvider
from .wan import WanProvider

__all__ = [
    "DEFAULT_ROUTES",
    "KNOWN_MODELS",
    "PROVIDERS",
    "CreateBody",
    "ImageData",
    "Provider",
    "Router",
    "WireFormat",
]

PROVIDERS: Mapping[str, Provider] = MappingProxyType(
    {
        provider.name: provider
        for provider in (
            SoraProvider(),
            WanProvider(),
            KlingProvider(),
            JimengProvider(),
            ViduProvider(),
        )
    }
)

#: Model-name prefix -> provider. Matching is case-insensitive, longest prefix wins.
DEFAULT_ROUTES: Mapping[str, str] = MappingProxyType(
    {
        "sora": "sora",
        "wan": "wan",
        "wanx": "wan",
        "kling": "kling",
        "jimeng": "jimeng",
        "vidu": "vidu",
    }
)

#: The models the gateway documents, and their providers.
KNOWN_MODELS: Mapping[str, str] = MappingProxyType(
    {
        "sora-2": "sora",
        "wan2.5-t2v-preview": "wan",
        "wan2.5-i2v-preview": "wan",
        "wan2.2-i2v-flash": "wan",
        "wan2.2-i2v-plus": "wan",
        "wanx2.1-i2v-plus": "wan",
        "wanx2.1-i2v-turbo": "wan",
        "wan2.2-kf2v-flash": "wan",
        "kling-v1": "kling",
        "kling-v2-master": "kling",
        "jimeng_vgfm_t2v_l20": "jimeng",
        "jimeng_vgfm_i2v_l20": "jimeng",
        "viduq1": "vidu",
    }
)


class Router:
    """Finds the adapter for a model: explicit provider, exact name, then prefix.

    Args:
        routes: extra ``prefix -> provider`` entries, merged over the defaults.
    """

    def __init__(self, routes: Mapping[str, str] | None = None) -> None:
        merged = {**DEFAULT_ROUTES, **{k.lower(): v for k, v in (routes or {}).items()}}
        for prefix, provider in merged.items():
            if provider not in PROVIDERS:
                raise ValueError(f"route {prefix!r} names unknown provider {provider!r}")
        self._routes = sorted(merged.items(), key=lambda item: len(item[0]), reverse=True)

    def provider_for(self, model: str, provider: str | None = None) -> Provider:
        """The adapter for ``model`` (or the one named by ``provider``)."""
        if provider is not None:
            adapter = PROVIDERS.get(provider.lower())
            if adapter is None:
                raise ValidationError(
                    f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}",
                    field="provider",
                )
            return adapter
        name = model.lower()
        for prefix, routed in self._routes:
            if name.startswith(prefix):
                return PROVIDERS[routed]
        raise ValidationError(
            f"unknown model {model!r}: no provider route matches it; pass provider= "
            f"({', '.join(PROVIDERS)}) or add a route with Client(routes={{...}})",
            field="model",
        )
