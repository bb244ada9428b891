"""Searching a collection: query words, full-text and vector rankings, fusion.

Full-text ranking is the database's own: SQLite FTS5 (bm25) or PostgreSQL
full-text search (a BM25-style sum of `ts_rank` per word over the stored,
GIN-indexed tsvector). A query embedding adds cosine similarity over the
chunks' embeddings, fused with the full-text ranking by reciprocal rank.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from core.passages import Passage
from store.knowledge.crud import require_collection
from store.knowledge.embeddings import unit_vector
from store.knowledge.errors import EmptyQueryError
from store.knowledge.tables import (
    PG_SEARCH_COLUMN,
    PG_TS_CONFIG,
    SQLITE_FTS_TABLE,
    KnowledgeChunk,
    KnowledgeDocument,
)

MAX_QUERY_TERMS = 64
"""Words of a query that are searched (the first ones): bounds the work a
pasted essay can cause."""
FTS_CANDIDATES = 50
"""Full-text hits fused with the vector ranking in hybrid mode (at least top_k)."""
RRF_K = 60
"""Reciprocal-rank fusion constant (Cormack et al. 2009): damps the weight of
the very first ranks so neither ranking dominates."""
TITLE_WEIGHT = 2.0
"""A query word in a chunk's heading path counts twice a word in its text."""
PG_WEIGHTS = "{0.1, 0.2, 0.5, 1.0}"
"""ts_rank weights of D, C, B (text), A (title): a title word counts twice (TITLE_WEIGHT)."""

_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORD_TEXT = """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    im ive id dont cant wont didnt doesnt isnt hi hello hey thanks thank please ok okay many
    much get got getting also still want wanted need know anymore ago yet already something
    anything stuff thing things
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
"""Words that carry no topic. Full-text matching ORs the query's words (a
customer's question never repeats an article's wording word for word), so
these would match nearly every chunk."""


def search_terms(query: str) -> list[str]:
    """The words of a query worth matching: lower-cased, deduplicated, in
    order, stopwords dropped (unless nothing else is left), at most
    MAX_QUERY_TERMS. Punctuation, quotes, emoji and operators like `AND` or
    `NEAR` are never passed to a query parser: they are not words here, or
    they are matched as plain words. EmptyQueryError when no word is left."""
    words = [w.lower() for w in _WORD.findall(query)]
    words = [w for w in words if len(w) > 1 or w.isdigit()] or words
    unique = list(dict.fromkeys(words))
    if not unique:
        raise EmptyQueryError(query)
    meaningful = [w for w in unique if w not in STOPWORDS] or unique
    return meaningful[:MAX_QUERY_TERMS]


def fts5_query(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression: every term a quoted string, ORed."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


def _pg_ranking_sql(term_count: int) -> str:
    """PostgreSQL ranking: BM25-style TF-IDF over the stored tsvector.

    `ts_rank` alone knows no term rarity, so "order" (in most chunks) would
    weigh as much as "customs" (in two). Each word is ranked on its own
    (`ts_rank` with the title weighted A, the text B, normalised by length)
    and weighted by its inverse document frequency in the collection, then
    the words' scores are summed. Every word goes through `plainto_tsquery`
    as a bound parameter, so no input can be a tsquery syntax error; a
    stopword gives an empty query and drops out.
    """
    values = ", ".join(f"({i}, CAST(:t{i} AS text))" for i in range(term_count))
    return (
        f"WITH terms AS (SELECT v.i, plainto_tsquery('{PG_TS_CONFIG}', v.term) AS q "
        f"FROM (VALUES {values}) AS v(i, term)), "
        "live AS (SELECT i, q FROM terms WHERE numnode(q) > 0), "
        "total AS (SELECT count(*) AS n FROM knowledge_chunks WHERE collection = :collection), "
        "stats AS (SELECT live.i, live.q, ("
        "SELECT count(*) FROM knowledge_chunks AS d "
        f"WHERE d.collection = :collection AND d.{PG_SEARCH_COLUMN} @@ live.q) AS df FROM live) "
        "SELECT c.id, sum(ln(1 + (total.n - s.df + 0.5) / (s.df + 0.5)) "
        f"* ts_rank('{PG_WEIGHTS}', c.{PG_SEARCH_COLUMN}, s.q, 1)) AS score "
        f"FROM knowledge_chunks AS c JOIN stats AS s ON c.{PG_SEARCH_COLUMN} @@ s.q "
        "CROSS JOIN total WHERE c.collection = :collection "
        "GROUP BY c.id ORDER BY score DESC, c.id LIMIT :limit"
    )


def _fts_ranking(
    session: Session, *, collection: str, terms: Sequence[str], limit: int
) -> list[tuple[int, float]]:
    """(chunk id, score) best first; a higher score is a better match."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        statement = sa.text(
            f"SELECT c.id, bm25({SQLITE_FTS_TABLE}, :title_weight, 1.0) AS rank "
            f"FROM {SQLITE_FTS_TABLE} JOIN knowledge_chunks AS c "
            f"ON c.id = {SQLITE_FTS_TABLE}.rowid "
            f"WHERE {SQLITE_FTS_TABLE} MATCH :match AND c.collection = :collection "
            "ORDER BY rank, c.id LIMIT :limit"
        )
        params: dict[str, Any] = {
            "title_weight": TITLE_WEIGHT,
            "match": fts5_query(terms),
            "collection": collection,
            "limit": limit,
        }
        # bm25() is lower-is-better (negative); flip it so every ranking agrees.
        return [(int(i), -float(r)) for i, r in session.connection().execute(statement, params)]
    if dialect == "postgresql":
        statement = sa.text(_pg_ranking_sql(len(terms)))
        params = {f"t{i}": term for i, term in enumerate(terms)}
        params |= {"collection": collection, "limit": limit}
        return [(int(i), float(s)) for i, s in session.connection().execute(statement, params)]
    raise NotImplementedError(f"knowledge search supports sqlite and postgresql, not {dialect}")


def _vector_ranking(
    session: Session, *, collection: str, query_embedding: Sequence[float], limit: int
) -> list[tuple[int, float]]:
    """(chunk id, cosine similarity) best first, over every embedded chunk.

    Plain Python over all of the collection's vectors (numpy is not a
    dependency): fine for a help center, not for a large corpus. Measured
    here: about 1 s per 1,000 chunks of 1,536 dimensions, mostly decoding
    the stored JSON; a few ms for the sample collection's 100 chunks of 64.
    Past a few thousand chunks, use pgvector or a vector index instead.
    """
    query = unit_vector(query_embedding)
    rows = session.exec(
        select(KnowledgeChunk.id, KnowledgeChunk.embedding).where(
            KnowledgeChunk.collection == collection, col(KnowledgeChunk.embedding).is_not(None)
        )
    ).all()
    scored: list[tuple[int, float]] = []
    for chunk_id, vector in rows:
        if chunk_id is None or vector is None or len(vector) != len(query):
            continue
        scored.append((chunk_id, sum(map(operator.mul, query, vector))))
    scored.sort(key=lambda item: (-item[1], item[0]))
    return scored[:limit]


def _fuse(rankings: Sequence[Sequence[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion: each ranking adds 1/(RRF_K + rank) to a chunk."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (chunk_id, _score) in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def search(
    session: Session,
    *,
    collection: str,
    query: str,
    top_k: int,
    query_embedding: Sequence[float] | None = None,
) -> list[Passage]:
    """The `top_k` best passages of `collection` for `query`, best first.

    Full-text ranking by default; with `query_embedding`, reciprocal-rank
    fusion of full-text and cosine similarity over the chunks' embeddings
    (chunks without an embedding take part through full text only).
    UnknownCollectionError, EmptyQueryError for a query with no word.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    require_collection(session, name=collection)
    terms = search_terms(query)
    if query_embedding is None:
        ranked = _fts_ranking(session, collection=collection, terms=terms, limit=top_k)
    else:
        candidates = max(FTS_CANDIDATES, top_k)
        ranked = _fuse(
            [
                _fts_ranking(session, collection=collection, terms=terms, limit=candidates),
                _vector_ranking(
                    session,
                    collection=collection,
                    query_embedding=query_embedding,
                    limit=candidates,
                ),
            ]
        )[:top_k]
    return _passages(session, ranked)


def _passages(session: Session, ranked: Sequence[tuple[int, float]]) -> list[Passage]:
    if not ranked:
        return []
    rows = session.exec(
        select(KnowledgeChunk, KnowledgeDocument.name, KnowledgeDocument.source)
        .join(KnowledgeDocument, col(KnowledgeDocument.id) == KnowledgeChunk.document_id)
        .where(col(KnowledgeChunk.id).in_([chunk_id for chunk_id, _ in ranked]))
    ).all()
    by_id = {chunk.id: (chunk, name, source) for chunk, name, source in rows}
    passages = []
    for chunk_id, score in ranked:
        if chunk_id not in by_id:  # deleted between the ranking and this read
            continue
        chunk, name, source = by_id[chunk_id]
        passages.append(
            Passage(
                id=f"{name}#{chunk.position}",
                document=name,
                source=source,
                title=chunk.title,
                position=chunk.position,
                text=chunk.text,
                score=round(score, 6),
            )
        )
    return passages
