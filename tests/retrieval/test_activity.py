"""The retrieve activity (through temporalio's ActivityEnvironment) on a
SQLite database with the sample collection: full-text and hybrid ranking,
lazy chunk embeddings through the simulator, and typed errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from temporalio.exceptions import ApplicationError

from activities.gateway.registry import ModelRegistry
from activities.retrieval.activities import INVALID_QUERY, RetrievalActivities
from activities.retrieval.embeddings import RegistryEmbedder
from activities.retrieval.types import RetrievalErrorType, RetrieveInput, RetrieveResult
from simulator.control import SimulatorControl
from simulator.models import Fault
from store.engine import make_engine, session_scope
from store.knowledge.crud import ensure_collection, ingest_document, list_collections
from store.knowledge.embeddings import chunks_missing_embeddings
from store.schema import create_all
from tests.activity_env import run_activity
from tests.retrieval.conftest import COLLECTION, HELP_CENTER, ingest_help_center, qa_pairs


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('retrieve') / 'chorus.db'}")
    create_all(engine)
    with session_scope(engine) as session:
        ingest_help_center(session)
    yield engine
    engine.dispose()


@pytest.fixture
async def embedder(registry: ModelRegistry) -> AsyncIterator[RegistryEmbedder]:
    embedder = RegistryEmbedder(registry)
    yield embedder
    await embedder.aclose()


def hybrid_collection(engine: Engine) -> str:
    """A fresh copy of the help center ranked with the simulator's embeddings."""
    name = f"hc-{uuid.uuid4().hex[:8]}"
    with session_scope(engine) as session:
        ensure_collection(session, name=name, embedding_alias="embed")
        ingest_help_center(session, collection=name)
    return name


async def retrieve(acts: RetrievalActivities, **values: object) -> RetrieveResult:
    return await run_activity(
        acts.retrieve, RetrieveInput.model_validate({"step": "ground"} | values)
    )


async def test_full_text_retrieval_returns_cited_passages(engine: Engine) -> None:
    acts = RetrievalActivities(engine)
    result = await retrieve(
        acts, collection=COLLECTION, query="How long until my refund hits my card?", top_k=4
    )
    assert (result.collection, result.ranking) == (COLLECTION, "fts")
    assert len(result.passages) == 4
    top = result.passages[0]
    assert top.document == "refunds.md" and top.id == f"refunds.md#{top.position}"
    assert top.source == "chains/knowledge/help_center/refunds.md"
    assert top.title and top.title.startswith("Refunds > ")
    assert "business days" in top.text
    # Passages, not documents, travel in history.
    assert len(result.model_dump_json()) < 6000
    assert len(result.model_dump_json()) < len((HELP_CENTER / "refunds.md").read_text())


async def test_unknown_collection_is_not_retryable_and_names_the_known(engine: Engine) -> None:
    with pytest.raises(ApplicationError) as caught:
        await retrieve(RetrievalActivities(engine), collection="faq", query="refund")
    error = caught.value
    assert error.type == RetrievalErrorType.UNKNOWN_COLLECTION and error.non_retryable
    assert "'faq'" in error.message and COLLECTION in error.message
    # A name no collection can have never reaches the database (NUL breaks PostgreSQL).
    with pytest.raises(ApplicationError) as odd:
        await retrieve(RetrievalActivities(engine), collection="faq\x00", query="refund")
    assert odd.value.type == RetrievalErrorType.UNKNOWN_COLLECTION and odd.value.non_retryable


async def test_a_query_without_words_is_not_retryable(engine: Engine) -> None:
    with pytest.raises(ApplicationError) as caught:
        await retrieve(RetrievalActivities(engine), collection=COLLECTION, query=" ?! 🙂 ")
    assert caught.value.type == INVALID_QUERY and caught.value.non_retryable
    assert "step 'ground'" in caught.value.message


async def test_hybrid_fills_missing_embeddings_once(
    engine: Engine, embedder: RegistryEmbedder, sim: SimulatorControl
) -> None:
    name = hybrid_collection(engine)
    with session_scope(engine) as session:
        chunks = len(chunks_missing_embeddings(session, collection=name))
    assert chunks > 64  # more than one batch
    acts = RetrievalActivities(engine, embedder)

    first = await retrieve(acts, collection=name, query="Where is my tracking number?", top_k=3)
    assert first.ranking == "hybrid" and first.passages[0].document == "order_tracking.md"
    calls = await sim.calls(model="sim-embed")
    inputs = [c.prompt.count("\n") + 1 for c in calls]  # the call log joins inputs by newlines
    assert len(calls) == 3 and calls[-1].prompt == "Where is my tracking number?"
    assert sum(inputs[:-1]) >= chunks
    with session_scope(engine) as session:
        assert chunks_missing_embeddings(session, collection=name) == []
        [listed] = [c for c in list_collections(session) if c.name == name]
        assert listed.embedded_chunks == listed.chunks == chunks

    await sim.reset()
    again = await retrieve(acts, collection=name, query="Where is my tracking number?", top_k=3)
    assert [p.id for p in again.passages] == [p.id for p in first.passages]
    assert [c.prompt for c in await sim.calls(model="sim-embed")] == [
        "Where is my tracking number?"
    ]

    # A changed document: only its new chunks are embedded on the next retrieval.
    with session_scope(engine) as session:
        ingest_document(
            session,
            collection=name,
            name="refunds.md",
            source="refunds.md",
            text="# Refunds\n\n## Speed\n\nRefunds take 3 days.",
        )
    await sim.reset()
    await retrieve(acts, collection=name, query="refund speed", top_k=3)
    assert [c.prompt for c in await sim.calls(model="sim-embed")] == [
        "Refunds > Speed\n\nRefunds take 3 days.",
        "refund speed",
    ]


async def test_hybrid_hit_rate_with_simulator_embeddings(
    engine: Engine, embedder: RegistryEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    """The simulator's embeddings are a hashed bag of words (64 dimensions,
    no stemming, stopwords kept): far weaker than a real embedding model, so
    fusing them costs some hit@1 against full text alone. The bar is the
    expected document in the top 3 for 85% of the questions."""
    name = hybrid_collection(engine)
    acts = RetrievalActivities(engine, embedder)
    pairs = qa_pairs("pairs")
    hit1 = hit3 = 0
    for pair in pairs:
        result = await retrieve(acts, collection=name, query=pair.query, top_k=3)
        assert result.ranking == "hybrid"
        documents = [p.document for p in result.passages]
        hit1 += documents[:1] == [pair.document]
        hit3 += pair.document in documents
    total = len(pairs)
    with capsys.disabled():
        print(
            f"\nsqlite hybrid (simulator embeddings): hit@1 {hit1}/{total} = "
            f"{100 * hit1 / total:.1f}%, hit@3 {hit3}/{total} = {100 * hit3 / total:.1f}%"
        )
    assert hit3 >= 0.85 * total


async def test_embedding_failures_keep_the_providers_retry_advice(
    engine: Engine, embedder: RegistryEmbedder, sim: SimulatorControl
) -> None:
    name = hybrid_collection(engine)
    acts = RetrievalActivities(engine, embedder)
    await sim.add_faults(Fault(kind="status", status=429, retry_after="2", model="sim-embed"))
    with pytest.raises(ApplicationError) as caught:
        await retrieve(acts, collection=name, query="refund")
    error = caught.value
    assert error.type == RetrievalErrorType.EMBEDDING_FAILED and not error.non_retryable
    assert error.next_retry_delay == timedelta(seconds=2)
    assert f"collection {name!r} with alias 'embed'" in error.message
    assert error.details[0]["provider_error_type"] == "RateLimited"
    # The retry (here: the next call) succeeds.
    assert (await retrieve(acts, collection=name, query="refund")).ranking == "hybrid"


async def test_no_embedder_for_an_embedding_collection_is_a_configuration_error(
    engine: Engine,
) -> None:
    name = hybrid_collection(engine)
    with pytest.raises(ApplicationError) as caught:
        await retrieve(RetrievalActivities(engine, None), collection=name, query="refund")
    assert caught.value.type == RetrievalErrorType.EMBEDDING_FAILED
    assert caught.value.non_retryable and "no embedder" in caught.value.message
