"""Prices from genai-prices' bundled data, and the registry's own prices winning."""

from __future__ import annotations

import pytest

from activities.gateway.pricing import lookup, lookup_prices
from activities.gateway.registry import ModelRegistry
from activities.gateway.types import ModelPrices, TokenUsage


def test_gpt_4o_mini_resolves_from_bundled_data() -> None:
    prices = lookup_prices("openai", "gpt-4o-mini")
    assert prices is not None
    assert prices.input_per_mtok == pytest.approx(0.15)
    assert prices.output_per_mtok == pytest.approx(0.60)
    assert prices.cached_input_per_mtok == pytest.approx(0.075)


def test_anthropic_model_has_cache_prices_and_context_window() -> None:
    found = lookup("anthropic", "claude-3-5-haiku-latest")
    assert found is not None
    assert found.provider_id == "anthropic"
    assert found.prices.cache_write_per_mtok is not None
    assert found.prices.cached_input_per_mtok is not None
    assert found.prices.cached_input_per_mtok < found.prices.input_per_mtok
    assert found.context_window == 200_000


def test_tiered_prices_use_their_base_rate() -> None:
    # claude-sonnet-4-5 doubles its prices above 200k input tokens.
    prices = lookup_prices("anthropic", "claude-sonnet-4-5")
    assert prices is not None
    assert (prices.input_per_mtok, prices.output_per_mtok) == (3.0, 15.0)


@pytest.mark.parametrize(("provider", "model"), [("openai", "sim-mini"), ("simulator", "x")])
def test_unknown_model_or_provider_is_none(provider: str, model: str) -> None:
    assert lookup_prices(provider, model) is None


def test_registry_prices_override_genai_prices() -> None:
    registry = ModelRegistry.from_dict(
        {
            "models": {
                "listed": {
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                    "api_key_env": "OPENAI_API_KEY",
                },
                "negotiated": {
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                    "api_key_env": "OPENAI_API_KEY",
                    "prices": {"input_per_mtok": 0.10, "output_per_mtok": 0.40},
                },
            }
        }
    )
    listed, negotiated = registry.entry("listed"), registry.entry("negotiated")
    assert listed.prices_source == "genai-prices"
    assert listed.prices.input_per_mtok == pytest.approx(0.15)
    assert negotiated.prices_source == "registry"
    assert negotiated.prices == ModelPrices(input_per_mtok=0.10, output_per_mtok=0.40)
    usage = TokenUsage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert negotiated.prices.cost(usage) == pytest.approx(0.50)
    assert listed.prices.cost(usage) == pytest.approx(0.75)


def test_price_provider_redirects_the_lookup() -> None:
    # An OpenAI-compatible gateway serving gpt-4o-mini, priced as OpenAI prices it.
    registry = ModelRegistry.from_dict(
        {
            "models": {
                "proxied": {
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                    "base_url": "http://127.0.0.1:8080/v1",
                    "price_provider": "openai",
                }
            }
        }
    )
    assert registry.entry("proxied").prices.output_per_mtok == pytest.approx(0.60)
