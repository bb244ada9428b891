"""Model prices from the `genai-prices` package's bundled data.

Only the snapshot shipped inside the installed package is read: its
auto-update fetches from the network, which this project never does at run
time. A price that must be exact (a negotiated rate, a self-hosted model, the
simulator) belongs in the registry file, which always wins over this lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from genai_prices import data_snapshot
from genai_prices import types as gp_types

from activities.gateway.types import ModelPrices


@dataclass(frozen=True)
class PricedModel:
    """What genai-prices knows about one model."""

    provider_id: str
    model_id: str
    prices: ModelPrices
    context_window: int | None


def _per_mtok(value: Decimal | gp_types.TieredPrices | None) -> float | None:
    """Tiered prices (e.g. above 200k input tokens) keep their base rate: the
    registry has one price per kind, and chains rarely cross the tier."""
    if value is None:
        return None
    if isinstance(value, gp_types.TieredPrices):
        value = value.base
    return float(value)


def lookup(provider_id: str, model: str, at: datetime | None = None) -> PricedModel | None:
    """Prices and context window of `model` under genai-prices provider
    `provider_id` (e.g. "openai", "anthropic"), or None when it is unknown or
    has no per-token input and output prices."""
    # The bundled snapshot, unless some code started genai-prices' updater
    # (this project never does: it would fetch from the network).
    snapshot = data_snapshot.get_snapshot()
    try:
        provider, info = snapshot.find_provider_model(model, None, provider_id, None)
    except LookupError:
        return None
    price = info.get_prices(at or datetime.now(tz=UTC))
    input_price = _per_mtok(price.input_mtok)
    output_price = _per_mtok(price.output_mtok)
    if input_price is None or output_price is None:
        return None
    return PricedModel(
        provider_id=provider.id,
        model_id=info.id,
        prices=ModelPrices(
            input_per_mtok=input_price,
            output_per_mtok=output_price,
            cached_input_per_mtok=_per_mtok(price.cache_read_mtok),
            cache_write_per_mtok=_per_mtok(price.cache_write_mtok),
        ),
        context_window=info.context_window,
    )


def lookup_prices(provider_id: str, model: str) -> ModelPrices | None:
    """USD per million tokens for `model` at `provider_id`, or None if unknown."""
    found = lookup(provider_id, model)
    return found.prices if found else None
