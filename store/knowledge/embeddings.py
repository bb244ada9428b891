"""Chunks' embeddings: which chunks still need one, and storing them.

Embeddings are stored at unit length, so ranking by cosine similarity is a
dot product (see `store.knowledge.search`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sqlmodel import Session, col, select, update

from store.knowledge.errors import EmbeddingMismatchError
from store.knowledge.tables import KnowledgeChunk


def unit_vector(vector: Sequence[float]) -> list[float]:
    """The vector scaled to length 1 (a zero vector is returned as it is).
    EmbeddingMismatchError when it is empty or not all finite numbers."""
    values = [float(x) for x in vector]
    if not values or not all(math.isfinite(x) for x in values):
        raise EmbeddingMismatchError("an embedding must be a non-empty list of finite numbers")
    norm = math.sqrt(sum(x * x for x in values))
    return [x / norm for x in values] if norm else values


def chunks_missing_embeddings(
    session: Session, *, collection: str, limit: int = 1000
) -> list[tuple[int, str]]:
    """(chunk id, text to embed) of chunks that have no embedding yet."""
    rows = session.exec(
        select(KnowledgeChunk.id, KnowledgeChunk.title, KnowledgeChunk.text)
        .where(KnowledgeChunk.collection == collection, col(KnowledgeChunk.embedding).is_(None))
        .order_by(col(KnowledgeChunk.id))
        .limit(limit)
    ).all()
    return [(chunk_id, embedding_text(title, text)) for chunk_id, title, text in rows if chunk_id]


def embedding_text(title: str | None, text: str) -> str:
    """What a chunk's embedding is computed from: its heading path and text."""
    return f"{title}\n\n{text}" if title else text


def store_embeddings(session: Session, *, embeddings: Mapping[int, Sequence[float]]) -> int:
    """Save embeddings by chunk id (normalised to unit length); returns how
    many chunks were updated (a chunk deleted meanwhile is skipped)."""
    updated = 0
    for chunk_id, vector in embeddings.items():
        result = session.exec(
            update(KnowledgeChunk)
            .where(col(KnowledgeChunk.id) == chunk_id)
            .values(embedding=unit_vector(vector))
        )
        updated += result.rowcount
    session.flush()
    return updated
