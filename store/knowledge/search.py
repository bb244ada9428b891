"""Searching a collection: query terms, candidates, scores in 0..1, fusion.

A search runs in four steps, each in its own module or function:

1. The query's words (`search_terms`): stopwords dropped; a question made
   only of stopwords asks nothing and gets no passage. Order numbers and
   names the collection does not know are left out (`incidental`); another
   word the collection does not know is corrected to its nearest word (`typos`).
2. The collection's own statistics (`statistics`): document frequencies
   of this collection only, so other collections never change a ranking.
3. Candidates from the database's full-text index (SQLite FTS5, PostgreSQL's
   GIN-indexed tsvector): the best `CANDIDATES` chunks matching any term.
4. Scores (`scoring`): BM25 over the text and the weighted headings,
   normalised to 0..1 (the share of the query's information a chunk
   matches), computed in Python from the chunks' text, so both backends
   score alike. With a query embedding, the score is a weighted sum of that
   and the cosine similarity. Identical passages (one folder ingested under
   two names) are kept once, and `min_score` drops weak ones: a question
   the collection does not cover gets nothing rather than a wrong citation.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from core.passages import Passage
from store.knowledge.crud import require_collection
from store.knowledge.embeddings import unit_vector
from store.knowledge.errors import EmptyQueryError
from store.knowledge.incidental import IncidentalWords, incidental_words
from store.knowledge.names import valid_collection_name
from store.knowledge.scoring import ChunkTerms, QueryTerm, analyse_chunk, idf, score
from store.knowledge.statistics import CACHE, CollectionStatistics
from store.knowledge.tables import (
    PG_SEARCH_COLUMN,
    PG_TS_CONFIG,
    SQLITE_FTS_TABLE,
    KnowledgeChunk,
)
from store.knowledge.terms import STOPWORDS, fold, stem
from store.knowledge.terms import WORD as _WORD
from store.knowledge.typos import correct

__all__ = [
    "DEFAULT_MIN_SCORE",
    "MAX_QUERY_TERMS",
    "STOPWORDS",
    "fts5_query",
    "query_terms",
    "search",
    "search_terms",
]

MAX_QUERY_TERMS = 64
"""Words of a query that are searched (the first ones): bounds the work a
pasted essay can cause."""
CANDIDATES = 100
"""Chunks the database's full-text index hands to scoring (at least top_k).
A small collection's matches all fit; in a large one the index's own order
(bm25 / idf-weighted ts_rank) picks them."""
EXACT_UP_TO = 5_000
"""Collections of up to this many chunks match candidates on every query
term (exact); larger ones as `candidate_probes` says."""
MATCH_BUDGET = 0.2
"""Share of a large collection's chunks the candidate terms may hold together."""
DEFAULT_MIN_SCORE = 0.14
"""Below this a passage is not worth citing. Chosen, with
`store.knowledge.scoring.SATURATION_TERMS`, on the tuning sets only:
the in-sample questions (tests/retrieval/qa_pairs.yaml), the off-topic ones
(tests/retrieval/off_topic.yaml) and the long tickets
(tests/retrieval/long_tickets.yaml); tests/retrieval/test_ranking.py prints
the distributions. Full-text, at 0.14: every in-sample answer passes (lowest
0.168), 29 of the 30 long covered tickets keep their answer (lowest 0.137),
8 of 10 off-topic questions and 10 of 16 uncovered long tickets get nothing
(highest 0.234 and 0.226). 0.13 keeps all 30 tickets but lets 3 more
uncovered questions through; 0.15 loses another covered ticket for none
more dropped. Lexical scores overlap there (a question about renting kayaks
shares words with the article on shipping them), so the threshold favours
answering a covered ticket over refusing an uncovered one: a wrong "nothing
relevant" sends a question the Help Center answers to a person. Not applied
unless asked for (`min_score=`), so existing callers keep every passage."""
HYBRID_TEXT_WEIGHT = 0.6
"""In hybrid mode, score = this * full-text score + the rest * cosine similarity.
Chosen on the tuning questions only (bench/retrieval_fusion_sweep.py, local
model): the lowest weight at which the in-sample questions keep hit@1 100%
(from 0.4) and the off-topic ones get "nothing relevant" as often as with
full text (from 0.6), so the embeddings keep the most say."""
TRUSTED_TEXT_SCORE = 0.4
"""In hybrid mode with a `min_similarity`, a question whose best passage
matches this share of its information in words is answered whatever the
vectors say: a typo ("retrun socks i opend") scrambles a static word
embedding (cosine 0.22) while typo correction still finds the words (0.52).
Chosen on the tuning sets with the local model's `min_similarity`: the
uncovered tuning questions whose vectors fail score at most 0.32 in words,
the one covered question whose vectors fail 0.52; 0.4 sits between them."""
PG_WEIGHTS = "{0.1, 0.2, 0.5, 1.0}"
"""ts_rank weights of D, C, B (text), A (headings), for choosing candidates."""
ANALYSED_CHUNKS_KEPT = 4_000
"""Analysed chunks kept per collection in memory: about 5 KB each, so at
most 20 MB for a large collection; analysing a chunk again costs ~30 µs
plus reading its text."""


def search_terms(query: str) -> list[str]:
    """The words of a query worth matching: folded (lower case, no
    diacritics), deduplicated, in order, stopwords dropped, at most
    MAX_QUERY_TERMS. Empty for a question made only of stopwords. Punctuation,
    quotes, emoji and operators like `AND` or `NEAR` are never passed to a
    query parser: they are not words here, or they are matched as plain
    words. EmptyQueryError when the query has no word at all."""
    words = [fold(w) for w in _WORD.findall(query)]
    if not words:
        raise EmptyQueryError(query)
    words = [w for w in words if len(w) > 1 or w.isdigit()]
    unique = list(dict.fromkeys(words))
    return [w for w in unique if w not in STOPWORDS][:MAX_QUERY_TERMS]


def fts5_query(terms: Sequence[str], *, require_all: bool = False) -> str:
    """An FTS5 MATCH expression: every term a quoted string, ORed (ANDed)."""
    operator_ = " AND " if require_all else " OR "
    return operator_.join('"' + term.replace('"', '""') + '"' for term in terms)


def query_terms(
    words: Sequence[str],
    statistics: CollectionStatistics,
    *,
    incidental: IncidentalWords | None = None,
) -> list[QueryTerm]:
    """Each word with its idf in the collection, corrected first when the
    collection does not know it but knows a word one or two edits away.

    Words that name rather than ask (`incidental`: order numbers, product
    and people's names the collection does not know) and numbers the
    collection does not know are left out: they would only lower every
    score (see `store.knowledge.scoring`), and a name is no typo."""
    incidental = incidental or IncidentalWords()
    terms: list[QueryTerm] = []
    seen: set[str] = set()
    frequency = statistics.stem_frequency
    for word in words:
        if word in incidental.identifiers:
            continue
        term_stem = stem(word)
        corrected_from = None
        if term_stem not in frequency:
            if word in incidental.names or not word.isalpha():
                continue
            fixed = correct(word, statistics)
            if fixed is not None and stem(fixed) in frequency:
                corrected_from, word, term_stem = word, fixed, stem(fixed)
        if term_stem in seen:
            continue
        seen.add(term_stem)
        df = frequency.get(term_stem, 0)
        terms.append(
            QueryTerm(
                word=word,
                stem=term_stem,
                idf=idf(df, statistics.chunks),
                known=df > 0,
                corrected_from=corrected_from,
                forms=statistics.stem_forms.get(term_stem, ()),
            )
        )
    return terms


# -- candidates ---------------------------------------------------------------------------


def _pg_candidates_sql(term_count: int) -> str:
    """PostgreSQL candidates: one GIN index scan for the chunks matching any
    term, ranked by the sum of each term's `ts_rank` weighted by its idf.
    The idfs are parameters (the collection's statistics are computed once
    per collection, never per row) and the per-term tsqueries are built once
    in a MATERIALIZED CTE, so the plan reads the chunk table once."""
    queries = ", ".join(
        f"plainto_tsquery('{PG_TS_CONFIG}', CAST(:t{i} AS text)) AS q{i}" for i in range(term_count)
    )
    rank = " + ".join(
        f"CAST(:w{i} AS double precision) "
        f"* ts_rank('{PG_WEIGHTS}', c.{PG_SEARCH_COLUMN}, q.q{i}, 1)"
        for i in range(term_count)
    )
    return (
        f"WITH q AS MATERIALIZED (SELECT {queries}) "
        f"SELECT c.id, {rank} AS rank FROM q, knowledge_chunks AS c "
        f"WHERE c.{PG_SEARCH_COLUMN} @@ websearch_to_tsquery('{PG_TS_CONFIG}', :any) "
        "AND c.collection = :collection ORDER BY rank DESC, c.id LIMIT :limit"
    )


@dataclass(frozen=True)
class Probe:
    """One full-text query that gathers candidates."""

    terms: list[QueryTerm]
    require_all: bool = False
    """A chunk must hold every term (otherwise any)."""
    fallback: bool = False
    """Run only when the probes before found nothing."""


def candidate_probes(terms: Sequence[QueryTerm], statistics: CollectionStatistics) -> list[Probe]:
    """The full-text queries that gather candidates, their results merged
    in this order.

    In a collection of up to `EXACT_UP_TO` chunks, one query: any known
    term, so every chunk that could score is scored. In a larger one,
    matching "order" among 40,000 chunks would rank them all, so: the
    rarest terms whose chunks add up to at most `MATCH_BUDGET` of the
    collection, any of them; and the two most informative of the other
    (common) terms together, so that chunks about "gift card" are found
    for "I lost the gift card my aunt gave me" although "aunt" is rarer.
    """
    known = sorted((t for t in terms if t.known), key=lambda t: (-t.idf, t.word))
    if statistics.chunks <= EXACT_UP_TO or len(known) < 2:
        return [Probe(known)] if known else []
    budget = MATCH_BUDGET * statistics.chunks
    frequency = statistics.stem_frequency
    rare: list[QueryTerm] = []
    total = 0
    for term in known:
        total += frequency[term.stem]
        if total > budget:
            break
        rare.append(term)
    common = known[len(rare) :]
    probes: list[Probe] = []
    if rare:
        probes.append(Probe(rare))
    if len(common) >= 2:
        probes.append(Probe(common[:2], require_all=True))
    if not rare:  # a question of common words: its rarest word when they never meet
        probes.append(Probe(known[:1], fallback=True))
    return probes


def candidates_statement(
    dialect: str,
    *,
    collection: str,
    terms: Sequence[QueryTerm],
    limit: int,
    require_all: bool = False,
) -> tuple[sa.TextClause, dict[str, Any]] | None:
    """The statement (and its parameters) that picks full-text candidates
    holding any (or all) of the known terms; None when no term is known."""
    known = [t for t in terms if t.known]
    if not known:
        return None
    if dialect == "sqlite":
        statement = sa.text(
            f"SELECT c.id FROM {SQLITE_FTS_TABLE} JOIN knowledge_chunks AS c "
            f"ON c.id = {SQLITE_FTS_TABLE}.rowid "
            f"WHERE {SQLITE_FTS_TABLE} MATCH :match AND c.collection = :collection "
            f"ORDER BY bm25({SQLITE_FTS_TABLE}, 2.0, 1.0), c.id LIMIT :limit"
        )
        params: dict[str, Any] = {
            "match": fts5_query([t.word for t in known], require_all=require_all)
        }
    elif dialect == "postgresql":
        statement = sa.text(_pg_candidates_sql(len(known)))
        params = {f"t{i}": t.word for i, t in enumerate(known)}
        params |= {f"w{i}": t.idf for i, t in enumerate(known)}
        # websearch syntax: `or` between bare words (\w+ only, so no quote or
        # minus can change the query's meaning).
        params["any"] = (" " if require_all else " or ").join(t.word for t in known)
    else:
        raise NotImplementedError(f"knowledge search supports sqlite and postgresql, not {dialect}")
    return statement, params | {"collection": collection, "limit": limit}


def _fts_candidates(
    session: Session,
    *,
    collection: str,
    terms: Sequence[QueryTerm],
    statistics: CollectionStatistics,
    limit: int,
) -> list[int]:
    """Ids of the chunks the full-text index ranks best for the terms."""
    dialect = session.get_bind().dialect.name
    found: dict[int, None] = {}
    for probe in candidate_probes(terms, statistics):
        if probe.fallback and found:
            continue
        built = candidates_statement(
            dialect,
            collection=collection,
            terms=probe.terms,
            limit=limit,
            require_all=probe.require_all,
        )
        if built is not None:
            statement, params = built
            rows = session.connection().execute(statement, params)
            found.update((int(row[0]), None) for row in rows)
    return list(found)


def _vector_ranking(
    session: Session, *, collection: str, query_embedding: Sequence[float], limit: int
) -> list[tuple[int, float]]:
    """(chunk id, cosine similarity) best first, over every embedded chunk.

    Plain Python over all of the collection's vectors: fine for a help
    center, not for a large corpus. Measured here: about 1 s per 1,000
    chunks of 1,536 dimensions, mostly decoding the stored JSON; a few ms for
    the sample collection's 100 chunks of 64. Past a few thousand chunks,
    use pgvector or a vector index instead.
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


# -- scoring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Analysed:
    terms: ChunkTerms
    text_key: int
    """Hash of the whitespace-normalised text: equal for identical passages."""


_TEXTS_SQL = sa.text("SELECT id, title, text FROM knowledge_chunks WHERE id IN :ids").bindparams(
    sa.bindparam("ids", expanding=True)
)
_PASSAGES_SQL = sa.text(
    "SELECT c.id, c.position, c.title, c.text, d.name, d.source "
    "FROM knowledge_chunks AS c JOIN knowledge_documents AS d ON d.id = c.document_id "
    "WHERE c.id IN :ids"
).bindparams(sa.bindparam("ids", expanding=True))


def _analysed(
    session: Session, statistics: CollectionStatistics, ids: Sequence[int]
) -> dict[int, _Analysed]:
    """The chunks analysed for scoring, read from the database only when
    this collection state (`statistics`) has not analysed them yet: chunk
    ids are never reused within one state, so the memo is always right and
    dies with the state. Chunks deleted meanwhile are left out."""
    memo: dict[int, Any] = statistics.memo
    # Threads share the memo (a worker's activities run in a pool): read it
    # once per id, and keep what this search analysed in its own dict.
    found: dict[int, _Analysed | None] = {i: memo.get(i) for i in ids}
    missing = [i for i, analysed in found.items() if analysed is None]
    if missing:
        if len(memo) + len(missing) > ANALYSED_CHUNKS_KEPT:
            memo.clear()
        for chunk_id, title, text in session.connection().execute(_TEXTS_SQL, {"ids": missing}):
            analysed = _Analysed(analyse_chunk(title, text), hash(" ".join(text.split()).lower()))
            found[int(chunk_id)] = memo[int(chunk_id)] = analysed
    return {i: analysed for i, analysed in found.items() if analysed is not None}


def _passages(session: Session, chosen: Sequence[tuple[float, int]]) -> list[Passage]:
    """Passages for (score, chunk id) pairs, in their order."""
    if not chosen:
        return []
    params = {"ids": [chunk_id for _, chunk_id in chosen]}
    rows = {int(r[0]): r for r in session.connection().execute(_PASSAGES_SQL, params)}
    passages = []
    for value, chunk_id in chosen:
        if chunk_id not in rows:  # deleted meanwhile
            continue
        _, position, title, text, document, source = rows[chunk_id]
        passages.append(
            Passage(
                id=f"{document}#{position}",
                document=document,
                source=source,
                title=title,
                position=int(position),
                text=text,
                score=round(value, 6),
            )
        )
    return passages


_COLLECTION_SQL = sa.text("SELECT 1 FROM knowledge_collections WHERE name = :name")


def _require_collection(session: Session, name: str) -> None:
    """One indexed lookup; `require_collection` (which names the known
    collections) only when there is no such collection."""
    if (
        not valid_collection_name(name)  # never sent to the database
        or session.connection().execute(_COLLECTION_SQL, {"name": name}).first() is None
    ):
        require_collection(session, name=name)


def search(
    session: Session,
    *,
    collection: str,
    query: str,
    top_k: int,
    query_embedding: Sequence[float] | None = None,
    min_score: float | None = None,
    min_similarity: float | None = None,
) -> list[Passage]:
    """The `top_k` best passages of `collection` for `query`, best first,
    each with a score in 0..1 comparable across queries.

    Full-text ranking by default; with `query_embedding`, a weighted sum of
    the full-text score and cosine similarity over the chunks' embeddings
    (`HYBRID_TEXT_WEIGHT`). Passages scoring below `min_score` are dropped
    (`DEFAULT_MIN_SCORE` is the tuned threshold; None keeps every passage).
    A question of stopwords only, or of words the collection does not know
    even after typo correction, gets no passage in either mode.

    `min_similarity` (hybrid mode, with `min_score`; the embedding model's
    own threshold, as cosine scales differ between models) decides "nothing
    relevant" on the vectors too: when no chunk's cosine similarity reaches
    it, the collection only shares words with the question ("do you rent
    kayaks?" and the article on shipping them), unless a passage matches
    `TRUSTED_TEXT_SCORE` of it in words. Both signals must then agree that
    something is relevant.
    UnknownCollectionError; EmptyQueryError for a query with no word at all.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score must be between 0 and 1, got {min_score}")
    if min_similarity is not None and not -1.0 <= min_similarity <= 1.0:
        raise ValueError(f"min_similarity must be between -1 and 1, got {min_similarity}")
    _require_collection(session, collection)
    words = search_terms(query)
    if not words:
        return []
    statistics = CACHE.get(session, collection=collection)
    terms = query_terms(words, statistics, incidental=incidental_words(query))
    if not any(t.known for t in terms):
        return []
    limit = max(CANDIDATES, top_k)
    candidate_ids = _fts_candidates(
        session, collection=collection, terms=terms, statistics=statistics, limit=limit
    )
    similarity: dict[int, float] = {}
    if query_embedding is not None:
        similarity = dict(
            _vector_ranking(
                session, collection=collection, query_embedding=query_embedding, limit=limit
            )
        )
    ids = list(dict.fromkeys([*candidate_ids, *similarity]))
    analysed = _analysed(session, statistics, ids)
    scored: list[tuple[float, int]] = []
    best_text = 0.0
    for chunk_id, chunk in analysed.items():
        value = score(terms, chunk.terms, statistics.avg_length)
        best_text = max(best_text, value)
        if query_embedding is not None:
            cosine = max(0.0, similarity.get(chunk_id, 0.0))
            value = HYBRID_TEXT_WEIGHT * value + (1.0 - HYBRID_TEXT_WEIGHT) * cosine
        scored.append((value, chunk_id))
    if (
        min_score is not None
        and min_similarity is not None
        and query_embedding is not None
        and max(similarity.values(), default=-1.0) < min_similarity
        and best_text < TRUSTED_TEXT_SCORE
    ):
        return []  # shared words only: no passage is close in meaning
    scored.sort(key=lambda item: (-item[0], item[1]))
    chosen: list[tuple[float, int]] = []
    seen_texts: set[int] = set()
    for value, chunk_id in scored:
        if min_score is not None and value < min_score:
            break
        text_key = analysed[chunk_id].text_key
        if text_key in seen_texts:  # an identical passage ranks higher
            continue
        seen_texts.add(text_key)
        chosen.append((value, chunk_id))
        if len(chosen) == top_k:
            break
    return _passages(session, chosen)
