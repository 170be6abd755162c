"""Provider names of gateway.toml: the dialects, and presets that fill in known servers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from proxy.config.values import Provider


@dataclass(frozen=True, slots=True)
class Preset:
    """What `provider = NAME` means: the dialect spoken, and defaults the upstream may override."""

    dialect: Provider
    base_url: str | None = None
    """The base URL (version segment included) when the upstream gives none."""
    stream_usage: bool = True
    """Whether the server accepts `stream_options.include_usage` on streams."""
    responses: bool = False
    """Whether the server implements the Responses API (`/v1/responses`)."""
    short_tool_ids: bool = False
    """Whether tool-call ids must be 9 letters and digits (Mistral)."""


PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        # Any OpenAI-compatible server: base_url is required (it says which one).
        "openai": Preset(Provider.OPENAI, responses=True),
        "anthropic": Preset(Provider.ANTHROPIC, "https://api.anthropic.com/v1"),
        "azure": Preset(Provider.AZURE, responses=True),
        "bedrock": Preset(Provider.BEDROCK),  # base URL from `region`
        "gemini": Preset(Provider.GEMINI, "https://generativelanguage.googleapis.com/v1beta"),
        "groq": Preset(
            Provider.OPENAI, "https://api.groq.com/openai/v1", stream_usage=False, responses=True
        ),
        "mistral": Preset(Provider.OPENAI, "https://api.mistral.ai/v1", short_tool_ids=True),
        "together": Preset(Provider.OPENAI, "https://api.together.xyz/v1"),
        "fireworks": Preset(Provider.OPENAI, "https://api.fireworks.ai/inference/v1"),
        "deepseek": Preset(Provider.OPENAI, "https://api.deepseek.com/v1"),
        "openrouter": Preset(Provider.OPENAI, "https://openrouter.ai/api/v1", responses=True),
        "cerebras": Preset(Provider.OPENAI, "https://api.cerebras.ai/v1"),
        "xai": Preset(Provider.OPENAI, "https://api.x.ai/v1", responses=True),
        # Perplexity has no version segment: its chat endpoint is /chat/completions.
        "perplexity": Preset(Provider.OPENAI, "https://api.perplexity.ai", stream_usage=False),
        "ollama": Preset(Provider.OPENAI, "http://127.0.0.1:11434/v1"),
        "vllm": Preset(Provider.OPENAI, "http://127.0.0.1:8000/v1"),
        "lmstudio": Preset(Provider.OPENAI, "http://127.0.0.1:1234/v1", responses=True),
    }
)
"""Every accepted `provider` value. Presets speak a dialect; no request path knows their names."""
