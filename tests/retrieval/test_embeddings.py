"""The registry embedder against the simulator's /v1/embeddings: vectors in
order, batches, and provider failures translated like model-call failures."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.gateway.registry import ModelRegistry
from activities.gateway.types import ProviderErrorType
from activities.retrieval.embeddings import MAX_BATCH, RegistryEmbedder, parse_embeddings
from simulator.control import SimulatorControl
from simulator.embeddings import embed as sim_embed
from simulator.models import Fault


@pytest.fixture
async def embedder(registry: ModelRegistry) -> AsyncIterator[RegistryEmbedder]:
    embedder = RegistryEmbedder(registry)
    yield embedder
    await embedder.aclose()


async def test_embeddings_come_back_in_order_and_in_batches(
    embedder: RegistryEmbedder, sim: SimulatorControl
) -> None:
    texts = [f"refund number {i}" for i in range(MAX_BATCH + 6)]
    vectors = await embedder("embed", texts)
    assert len(vectors) == len(texts)
    assert all(len(v) == 64 for v in vectors)
    assert vectors[0] == pytest.approx(sim_embed(texts[0], 64))
    assert vectors[-1] == pytest.approx(sim_embed(texts[-1], 64))
    assert math.isclose(math.fsum(x * x for x in vectors[3]), 1.0)
    calls = await sim.calls(model="sim-embed")
    assert [c.endpoint for c in calls] == ["embeddings", "embeddings"]  # 64 + 6


async def test_rate_limit_is_retryable_with_the_providers_delay(
    embedder: RegistryEmbedder, sim: SimulatorControl
) -> None:
    await sim.add_faults(Fault(kind="status", status=429, retry_after="3", model="sim-embed"))
    with pytest.raises(ApplicationError) as caught:
        await embedder("embed", ["hello"])
    error = caught.value
    assert error.type == ProviderErrorType.RATE_LIMITED and not error.non_retryable
    assert error.next_retry_delay == timedelta(seconds=3)
    assert "alias 'embed'" in error.message and "429" in error.message
    assert await embedder("embed", ["hello"])  # the fault was used up


async def test_server_error_and_bad_request(
    embedder: RegistryEmbedder, sim: SimulatorControl
) -> None:
    await sim.add_faults(
        Fault(kind="status", status=503, model="sim-embed"),
        Fault(kind="status", status=400, model="sim-embed", message="input too weird"),
    )
    with pytest.raises(ApplicationError) as first:
        await embedder("embed", ["x"])
    assert first.value.type == ProviderErrorType.OVERLOADED and not first.value.non_retryable
    with pytest.raises(ApplicationError) as second:
        await embedder("embed", ["x"])
    assert second.value.type == ProviderErrorType.BAD_REQUEST and second.value.non_retryable
    assert "input too weird" in second.value.message


async def test_malformed_reply_is_retryable(
    embedder: RegistryEmbedder, sim: SimulatorControl
) -> None:
    await sim.add_faults(Fault(kind="malformed", model="sim-embed"))
    with pytest.raises(ApplicationError) as caught:
        await embedder("embed", ["x"])
    assert caught.value.type == ProviderErrorType.MALFORMED and not caught.value.non_retryable


async def test_configuration_errors_are_not_retryable(registry: ModelRegistry) -> None:
    registry_with_claude = ModelRegistry.from_dict(
        {
            "models": {
                "claude": {
                    "provider": "anthropic",
                    "model": "claude-3-5-haiku-latest",
                    "api_key_env": "ANTHROPIC_API_KEY",
                    "prices": {"input_per_mtok": 1, "output_per_mtok": 5},
                },
                "keyed": {
                    "provider": "openai",
                    "model": "text-embedding-3-small",
                    "base_url": "http://127.0.0.1:9/v1",
                    "api_key_env": "CHORUS_TEST_SURELY_UNSET_KEY",
                    "prices": {"input_per_mtok": 0.02, "output_per_mtok": 0},
                },
            }
        }
    )
    embedder = RegistryEmbedder(registry_with_claude)
    try:
        for alias, message in [
            ("nope", "unknown embedding model alias 'nope'"),
            ("claude", "no embeddings endpoint"),
            ("keyed", "CHORUS_TEST_SURELY_UNSET_KEY"),
        ]:
            with pytest.raises(ApplicationError, match=message) as caught:
                await embedder(alias, ["x"])
            assert caught.value.type == ProviderErrorType.CONFIG and caught.value.non_retryable
    finally:
        await embedder.aclose()


def test_parse_embeddings_checks_the_reply(registry: ModelRegistry) -> None:
    entry = registry.entry("embed")
    good = {"data": [{"index": 1, "embedding": [0, 1]}, {"index": 0, "embedding": [1, 0]}]}
    assert parse_embeddings(entry, good, 2) == [[1.0, 0.0], [0.0, 1.0]]
    bad_replies: list[tuple[dict[str, Any], str]] = [
        ({}, "no embeddings for 2 inputs"),
        ({"data": [{"embedding": [1.0]}]}, "1 embeddings for 2 inputs"),
        ({"data": [{"embedding": [1.0]}, {"embedding": "AAAA"}]}, "embedding 1 is not"),
        ({"data": [{"embedding": [1.0]}, {"embedding": [float("nan")]}]}, "embedding 1 is not"),
        ({"data": [{"embedding": [1.0]}, {"embedding": [True]}]}, "embedding 1 is not"),
        ({"data": [{"embedding": [1.0]}, {"embedding": [1.0, 2.0]}]}, "different lengths"),
    ]
    for reply, message in bad_replies:
        with pytest.raises(ApplicationError, match=message) as caught:
            parse_embeddings(entry, reply, 2)
        assert caught.value.type == ProviderErrorType.MALFORMED
