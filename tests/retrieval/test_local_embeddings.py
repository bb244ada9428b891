"""`provider: local` embeddings: WordLlama run in the worker from its own wheel,
through the registry embedder and the retrieve activity, with nothing
reaching the network."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from temporalio.exceptions import ApplicationError

from activities.gateway.registry import ModelRegistry, RegistryError
from activities.retrieval.activities import RetrievalActivities
from activities.retrieval.embeddings import RegistryEmbedder
from activities.retrieval.local_embeddings import LOCAL_MODELS
from activities.retrieval.types import RetrievalErrorType, RetrieveInput
from store.engine import make_engine, session_scope
from store.knowledge.crud import ensure_collection
from store.knowledge.embeddings import chunks_missing_embeddings
from store.schema import create_all
from tests.activity_env import run_activity
from tests.retrieval.conftest import ROOT, ingest_help_center

MODEL = "wordllama-l2-supercat-256"


def local_registry(model: str = MODEL) -> ModelRegistry:
    return ModelRegistry.from_dict(
        {"models": {"embed_local": {"provider": "local", "model": model}}}
    )


@pytest.fixture
async def embedder() -> AsyncIterator[RegistryEmbedder]:
    embedder = RegistryEmbedder(local_registry())
    yield embedder
    await embedder.aclose()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('local') / 'chorus.db'}")
    create_all(engine)
    yield engine
    engine.dispose()


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_a_local_entry_needs_no_url_key_or_price() -> None:
    entry = local_registry().entry("embed_local")
    assert (entry.provider, entry.model, entry.api_key_env) == ("local", MODEL, None)
    assert (entry.prices.input_per_mtok, entry.prices.output_per_mtok) == (0, 0)
    with pytest.raises(RegistryError, match=r"alias 'bad'.*remove 'base_url'"):
        ModelRegistry.from_dict(
            {"models": {"bad": {"provider": "local", "model": MODEL, "base_url": "http://x"}}}
        )


async def test_local_vectors_are_unit_length_and_know_near_synonyms(
    embedder: RegistryEmbedder,
) -> None:
    texts = ["where is my parcel", "where is my package", "do you sell bike helmets for kids"]
    parcel, package, helmets = await embedder("embed_local", texts)
    assert len(parcel) == LOCAL_MODELS[MODEL][1] == 256
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-4 for v in (parcel, package, helmets))
    assert cosine(parcel, package) > cosine(parcel, helmets) + 0.2
    # Deterministic: the same text gives the same vector.
    [again] = await embedder("embed_local", ["where is my parcel"])
    assert again == pytest.approx(parcel, abs=1e-6)


def test_an_unknown_local_model_stops_the_registry_at_load() -> None:
    with pytest.raises(RegistryError) as caught:
        local_registry("minilm-from-the-internet")
    message = str(caught.value)
    assert "alias 'embed_local'" in message and "minilm-from-the-internet" in message
    assert MODEL in message


async def test_hybrid_retrieval_with_local_embeddings(
    engine: Engine, embedder: RegistryEmbedder
) -> None:
    name = f"hc-local-{uuid.uuid4().hex[:8]}"
    with session_scope(engine) as session:
        ensure_collection(session, name=name, embedding_alias="embed_local")
        ingest_help_center(session, collection=name)
    acts = RetrievalActivities(engine, embedder)
    result = await run_activity(
        acts.retrieve,
        RetrieveInput(collection=name, query="how do I stop my trail box subscription", step="g"),
    )
    assert result.ranking == "hybrid"
    assert result.passages and result.passages[0].document == "subscriptions.md"
    with session_scope(engine) as session:
        assert chunks_missing_embeddings(session, collection=name) == []


async def test_a_collection_on_a_local_alias_fails_clearly_without_an_embedder(
    engine: Engine,
) -> None:
    name = f"hc-local-{uuid.uuid4().hex[:8]}"
    with session_scope(engine) as session:
        ensure_collection(session, name=name, embedding_alias="embed_local")
        ingest_help_center(session, collection=name)
    with pytest.raises(ApplicationError) as caught:
        await run_activity(
            RetrievalActivities(engine).retrieve,
            RetrieveInput(collection=name, query="refund", step="g"),
        )
    assert caught.value.type == RetrievalErrorType.EMBEDDING_FAILED
    assert caught.value.non_retryable and "embed_local" in caught.value.message


def test_the_model_loads_and_embeds_with_the_network_unreachable(tmp_path: Path) -> None:
    """A fresh process whose sockets cannot connect anywhere, with an empty
    home (no download cache), loads the model and embeds: everything it needs
    is inside the installed wheel."""
    script = textwrap.dedent(
        f"""
        import socket

        def refuse(*args, **kwargs):
            raise OSError("network disabled by the test")

        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from activities.retrieval.local_embeddings import load_local_model

        [vector] = load_local_model({MODEL!r}).embed(["where is my refund"])
        print(len(vector))
        """
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "256"
    assert not any(tmp_path.rglob("*.safetensors")), "nothing may be downloaded or cached"
