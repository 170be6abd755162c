"""Which adapter speaks each provider name of gateway.toml."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from proxy.config.values import Provider as ProviderName
from proxy.providers.anthropic import Anthropic
from proxy.providers.azure import Azure
from proxy.providers.base import Provider
from proxy.providers.bedrock import Bedrock
from proxy.providers.gemini import Gemini
from proxy.providers.openai import OpenAI

PROVIDERS: Mapping[str, Provider] = MappingProxyType(
    {
        ProviderName.OPENAI: OpenAI(),
        ProviderName.ANTHROPIC: Anthropic(),
        ProviderName.AZURE: Azure(),
        ProviderName.GEMINI: Gemini(),
        ProviderName.BEDROCK: Bedrock(),
    }
)
"""Every name in `config.values.Provider` has its adapter here (a unit test checks)."""
