"""A `provider: local` alias (an embedding model run in the worker) named on
a model step is a configuration error of the gateway, not a crash or a retry."""

from __future__ import annotations

import httpx

from activities.gateway.activities import ModelGateway
from activities.gateway.registry import ModelRegistry
from activities.gateway.types import ProviderErrorType
from tests.activities.test_call_model import Env, ask


async def test_a_local_embedding_alias_answers_no_model_step(http: httpx.AsyncClient) -> None:
    registry = ModelRegistry.from_dict(
        {"models": {"embed_local": {"provider": "local", "model": "wordllama-l2-supercat-256"}}}
    )
    err = await Env().fail(ModelGateway(registry, http), ask("embed_local"))
    assert err.type == ProviderErrorType.CONFIG and err.non_retryable
    assert "'embed_local'" in err.message and "embedding model" in err.message
    assert "step 'classify'" in err.message
