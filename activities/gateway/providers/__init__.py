"""Provider adapters: one per wire API, chosen by the registry entry's provider."""

from __future__ import annotations

from activities.gateway.providers.anthropic import AnthropicAdapter
from activities.gateway.providers.base import (
    RAW_ARGUMENTS_KEY,
    REQUEST_ID_HEADER,
    ProviderAdapter,
    ProviderReply,
    encodable_reply,
)
from activities.gateway.providers.openai import OpenAIAdapter

ADAPTERS: dict[str, ProviderAdapter] = {
    "openai": OpenAIAdapter("openai"),
    "anthropic": AnthropicAdapter(),
    # The simulator speaks the OpenAI API but is labelled as what it is.
    "simulator": OpenAIAdapter("simulator"),
}


def adapter_for(provider: str) -> ProviderAdapter:
    try:
        return ADAPTERS[provider]
    except KeyError:
        raise KeyError(f"no adapter for provider {provider!r}") from None


__all__ = [
    "ADAPTERS",
    "RAW_ARGUMENTS_KEY",
    "REQUEST_ID_HEADER",
    "AnthropicAdapter",
    "OpenAIAdapter",
    "ProviderAdapter",
    "ProviderReply",
    "adapter_for",
    "encodable_reply",
]
