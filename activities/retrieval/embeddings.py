"""Embeddings through the model gateway's registry: `POST {base_url}/embeddings`,
or a model run in the worker (`provider: local`).

A collection names a registry alias; this module turns the alias into an
OpenAI-compatible embeddings call (OpenAI, vLLM, Ollama, llama.cpp server,
OpenRouter and the simulator all speak it) with the alias's model, base URL
and key variable. Failures go through the gateway's one translator, so a 429
or 503 from an embeddings endpoint is retried by Temporal, after the
provider's Retry-After, exactly like a failed model call. A `local` alias is
computed in a thread of the worker by a model shipped inside an installed
package (activities/retrieval/local_embeddings.py); a missing extra or an
unknown model id is a non-retryable configuration error.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from activities.gateway.api_keys import read_api_key
from activities.gateway.errors import config_error, malformed_response
from activities.gateway.providers.base import REQUEST_ID_HEADER, endpoint, post_json
from activities.gateway.registry import ModelRegistry, ResolvedEntry
from activities.http_client import OwnsHttpClient
from activities.retrieval.local_embeddings import (
    MIN_SIMILARITY,
    LocalEmbeddingError,
    check_model_id,
    load_local_model,
)

Embedder = Callable[[str, list[str]], Awaitable[list[list[float]]]]
"""`await embedder(alias, texts)` → one vector per text, in order."""

MAX_BATCH = 64
"""Texts per request: far below every provider's limit (OpenAI: 2,048), and
small enough that one slow batch does not outlive a heartbeat timeout."""

EMBEDDING_PROVIDERS = frozenset({"openai", "simulator", "local"})
"""Providers that embed: OpenAI-compatible endpoints and local models (Anthropic has none)."""


class RegistryEmbedder(OwnsHttpClient):
    """Embeds texts with the model a registry alias names. One per worker
    process; it owns a pooled httpx client unless one is given."""

    def __init__(self, registry: ModelRegistry, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(http)
        self.registry = registry

    def check_alias(self, alias: str) -> ResolvedEntry:
        """The alias's entry, or a non-retryable configuration error naming
        what is wrong (unknown alias, provider without embeddings)."""
        if alias not in self.registry:
            known = ", ".join(self.registry.aliases) or "none"
            raise config_error(
                f"unknown embedding model alias {alias!r}: this worker's registry knows {known}"
            )
        entry = self.registry.entry(alias)
        if entry.provider not in EMBEDDING_PROVIDERS:
            raise config_error(
                f"alias {alias!r} is a {entry.provider} model, which has no embeddings "
                f"endpoint; use an OpenAI-compatible embedding model "
                f"({', '.join(sorted(EMBEDDING_PROVIDERS))})"
            )
        if entry.provider == "local":
            try:
                check_model_id(entry.model)
            except LocalEmbeddingError as exc:
                raise config_error(f"alias {alias!r}: {exc}") from None
        return entry

    def min_similarity(self, alias: str) -> float | None:
        """The alias's model's "nothing relevant" cosine threshold, when one
        was measured (local models: `MIN_SIMILARITY`); None otherwise."""
        entry = self.check_alias(alias)
        return MIN_SIMILARITY.get(entry.model) if entry.provider == "local" else None

    async def __call__(self, alias: str, texts: list[str]) -> list[list[float]]:
        entry = self.check_alias(alias)
        if entry.provider == "local":
            return await asyncio.to_thread(_embed_locally, alias, entry.model, texts)
        headers = {REQUEST_ID_HEADER: _request_id()}
        api_key = read_api_key(entry)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        vectors: list[list[float]] = []
        for start in range(0, len(texts), MAX_BATCH):
            batch = texts[start : start + MAX_BATCH]
            data = await post_json(
                self._http,
                provider=entry.provider,
                entry=entry,
                url=endpoint(entry, "embeddings"),
                headers=headers,
                payload={"model": entry.model, "input": batch},
            )
            vectors.extend(parse_embeddings(entry, data, len(batch)))
        return vectors


def _embed_locally(alias: str, model: str, texts: list[str]) -> list[list[float]]:
    try:
        return load_local_model(model).embed(texts)
    except LocalEmbeddingError as exc:
        raise config_error(f"alias {alias!r}: {exc}") from None


def parse_embeddings(
    entry: ResolvedEntry, data: dict[str, Any], expected: int
) -> list[list[float]]:
    """The vectors of an OpenAI-style embeddings reply, ordered by `index`;
    MalformedResponse (retryable) when the reply does not have one finite
    vector per input, all of one length."""
    items = data.get("data")
    if not isinstance(items, list) or len(items) != expected:
        count = len(items) if isinstance(items, list) else "no"
        raise malformed_response(
            entry.provider, entry.alias, f"{count} embeddings for {expected} inputs"
        )
    ordered: list[tuple[int, list[float]]] = []
    for position, item in enumerate(items):
        vector = item.get("embedding") if isinstance(item, dict) else None
        index = item.get("index", position) if isinstance(item, dict) else position
        if not _is_vector(vector) or not isinstance(index, int):
            raise malformed_response(
                entry.provider, entry.alias, f"embedding {position} is not a list of numbers"
            )
        ordered.append((index, [float(x) for x in vector]))  # type: ignore[union-attr]
    ordered.sort(key=lambda pair: pair[0])
    if len({len(vector) for _, vector in ordered}) > 1:
        raise malformed_response(entry.provider, entry.alias, "embeddings of different lengths")
    return [vector for _, vector in ordered]


def _is_vector(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
            for x in value
        )
    )


def _request_id() -> str:
    from temporalio import activity

    if activity.in_activity():
        info = activity.info()
        return f"{info.workflow_id}/{info.activity_id}"
    return "chorus-embed"
