"""The retrieve activity: top-k passages of a knowledge collection.

Database work runs in a thread (`asyncio.to_thread`): SQLAlchemy sessions
are blocking, and the worker's event loop also runs workflow tasks. A
collection with an embedding alias is ranked hybrid: chunks ingested without
embeddings are embedded here, on first retrieval, and stored, so ingest (the
API, the CLI) never needs a provider or its key; only workers do.

Only passages travel back (each a chunk of at most ~800 characters), never
whole documents, so a run's history stays small.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Literal

from sqlalchemy import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import metrics
from activities.logging import activity_logger
from activities.retrieval.embeddings import MAX_BATCH, Embedder, RegistryEmbedder
from activities.retrieval.types import RetrievalErrorType, RetrieveInput, RetrieveResult
from core.names import RETRIEVE
from store.engine import session_scope
from store.knowledge.crud import collection_names, get_collection
from store.knowledge.embeddings import chunks_missing_embeddings, store_embeddings
from store.knowledge.errors import EmptyQueryError, UnknownCollectionError
from store.knowledge.search import DEFAULT_MIN_SCORE, search
from store.knowledge.tables import KnowledgeCollection

LOGGER_NAME = "chorus.retrieval"

INVALID_QUERY = "InvalidQuery"
"""Error type of a query with no word to search for (not retryable: the
same rendered query fails the same way)."""

MAX_EMBED_PER_CALL = 5_000
"""Chunks embedded by one retrieval at most; a larger backlog is finished by
the next retrievals (each stores what it computed)."""


class RetrievalActivities:
    """Retrieval over the application database. One instance per worker;
    `embedder` is None on a worker that serves no embedding collection."""

    def __init__(self, engine: Engine, embedder: Embedder | None = None) -> None:
        self.engine = engine
        self.embedder = embedder

    @property
    def activities(self) -> Sequence[Callable[..., Any]]:
        return [self.retrieve]

    @activity.defn(name=RETRIEVE)
    async def retrieve(self, req: RetrieveInput) -> RetrieveResult:
        """`_retrieve`, counted in Chorus' metrics (activities/metrics.py)."""
        with metrics.counted(metrics.RETRIEVALS, metrics.RETRIEVAL_DURATION):
            return await self._retrieve(req)

    async def _retrieve(self, req: RetrieveInput) -> RetrieveResult:
        """Rank the collection's passages for the query. UnknownCollection and
        InvalidQuery are not retryable; EmbeddingFailed keeps the provider
        error's retryability and Retry-After."""
        log = activity_logger(LOGGER_NAME, step=req.step, collection=req.collection)
        collection = await asyncio.to_thread(self._collection, req.collection)
        query_embedding: list[float] | None = None
        alias = collection.embedding_alias
        if alias is not None:
            embedder = self._require_embedder(collection)
            filled = await self._fill_embeddings(embedder, alias, req.collection)
            if filled:
                log.info("retrieve.embedded_chunks", alias=alias, chunks=filled)
            [query_embedding] = await self._embed(embedder, alias, [req.query], req.collection)
        min_score = _min_score(req)
        min_similarity = None
        if alias is not None and isinstance(self.embedder, RegistryEmbedder):
            min_similarity = self.embedder.min_similarity(alias)
        try:
            passages = await asyncio.to_thread(
                self._search,
                req.collection,
                req.query,
                req.top_k,
                query_embedding,
                min_score,
                min_similarity,
            )
        except EmptyQueryError as exc:
            raise ApplicationError(
                f"step {req.step!r}: {exc}" if req.step else str(exc),
                type=INVALID_QUERY,
                non_retryable=True,
            ) from None
        except UnknownCollectionError as exc:  # deleted meanwhile
            raise _unknown(exc) from None
        ranking: Literal["fts", "hybrid"] = "fts" if query_embedding is None else "hybrid"
        nothing_relevant = min_score is not None and not passages
        log.info(
            "retrieve.done",
            ranking=ranking,
            passages=len(passages),
            top=passages[0].id if passages else None,
            min_score=min_score,
            nothing_relevant=nothing_relevant,
        )
        return RetrieveResult(
            collection=req.collection,
            query=req.query,
            ranking=ranking,
            passages=passages,
            min_score=min_score,
            nothing_relevant=nothing_relevant,
        )

    # -- database (blocking, run in threads) -------------------------------------------

    def _collection(self, name: str) -> KnowledgeCollection:
        with session_scope(self.engine) as session:
            found = get_collection(session, name=name)
            if found is None:
                raise _unknown(UnknownCollectionError(name, collection_names(session)))
            return found

    def _search(
        self,
        collection: str,
        query: str,
        top_k: int,
        query_embedding: list[float] | None,
        min_score: float | None,
        min_similarity: float | None,
    ) -> list[Any]:
        with session_scope(self.engine) as session:
            return search(
                session,
                collection=collection,
                query=query,
                top_k=top_k,
                query_embedding=query_embedding,
                min_score=min_score,
                min_similarity=min_similarity,
            )

    def _missing(self, collection: str, limit: int) -> list[tuple[int, str]]:
        with session_scope(self.engine) as session:
            return chunks_missing_embeddings(session, collection=collection, limit=limit)

    def _store(self, embeddings: dict[int, list[float]]) -> int:
        with session_scope(self.engine) as session:
            return store_embeddings(session, embeddings=embeddings)

    # -- embeddings ----------------------------------------------------------------------

    def _require_embedder(self, collection: KnowledgeCollection) -> Embedder:
        if self.embedder is None:
            raise ApplicationError(
                f"collection {collection.name!r} is ranked with embeddings from alias "
                f"{collection.embedding_alias!r}, but this worker has no embedder configured",
                type=RetrievalErrorType.EMBEDDING_FAILED,
                non_retryable=True,
            )
        return self.embedder

    async def _fill_embeddings(self, embedder: Embedder, alias: str, collection: str) -> int:
        """Embed and store chunks that have no embedding yet, a batch at a
        time (each batch stored at once, so a retry resumes where it failed)."""
        missing = await asyncio.to_thread(self._missing, collection, MAX_EMBED_PER_CALL)
        filled = 0
        for start in range(0, len(missing), MAX_BATCH):
            batch = missing[start : start + MAX_BATCH]
            vectors = await self._embed(embedder, alias, [text for _, text in batch], collection)
            embeddings = {
                chunk_id: vector for (chunk_id, _), vector in zip(batch, vectors, strict=True)
            }
            filled += await asyncio.to_thread(self._store, embeddings)
            activity.heartbeat(f"embedded {filled} of {len(missing)} chunks")
        return filled

    @staticmethod
    async def _embed(
        embedder: Embedder, alias: str, texts: list[str], collection: str
    ) -> list[list[float]]:
        try:
            vectors = await embedder(alias, texts)
        except ApplicationError as exc:
            # One error type for the chain; the provider's retryability and
            # Retry-After are kept, so retries behave like model calls.
            raise ApplicationError(
                f"embedding for collection {collection!r} with alias {alias!r} failed: "
                f"{exc.message}",
                {"alias": alias, "collection": collection, "provider_error_type": exc.type},
                type=RetrievalErrorType.EMBEDDING_FAILED,
                non_retryable=exc.non_retryable,
                next_retry_delay=exc.next_retry_delay,
            ) from exc
        if len(vectors) != len(texts):
            raise ApplicationError(
                f"alias {alias!r} returned {len(vectors)} embeddings for {len(texts)} texts",
                type=RetrievalErrorType.EMBEDDING_FAILED,
            )
        return vectors


def _min_score(req: RetrieveInput) -> float | None:
    """The threshold this retrieval applies: the step's, else the store's
    default; none for a run scheduled before steps had one."""
    if not req.apply_min_score:
        return None
    return DEFAULT_MIN_SCORE if req.min_score is None else req.min_score


def _unknown(exc: UnknownCollectionError) -> ApplicationError:
    return ApplicationError(
        str(exc),
        {"collection": exc.name, "known": exc.known},
        type=RetrievalErrorType.UNKNOWN_COLLECTION,
        non_retryable=True,
    )
