"""Per-collection term statistics: how many chunks hold each word and stem.

Ranking needs document frequencies of the collection searched, not of the
whole database: SQLite's FTS5 `bm25()` counts every collection in the shared
index, so adding an unrelated collection changed which article came first.
These statistics are computed here, from the collection's own chunks, with
the tokeniser of `store.knowledge.terms`, identically on both backends.

They are kept in memory per process and per collection, keyed by a
fingerprint (`fingerprint`): ingest replaces chunks rather than editing them,
so any ingest or delete changes it and the next search recomputes the
statistics. The fingerprint costs three index lookups per search; a recomputation reads the
collection once (about 2 s per 40,000 chunks, bench/retrieval_scale.py).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from store.knowledge.terms import is_stopword, stem, words

Fingerprint = tuple[int, str, int]

_FINGERPRINT_SQL = sa.text(
    "SELECT (SELECT count(*) FROM knowledge_documents WHERE collection = :collection), "
    "(SELECT max(updated_at) FROM knowledge_documents WHERE collection = :collection), "
    "(SELECT coalesce(max(id), 0) FROM knowledge_chunks WHERE collection = :collection)"
)
_CHUNKS_SQL = sa.text("SELECT title, text FROM knowledge_chunks WHERE collection = :collection")
_BATCH = 2_000
_MAX_CACHED_COLLECTIONS = 64


@dataclass(frozen=True)
class CollectionStatistics:
    fingerprint: Fingerprint
    chunks: int
    avg_length: float
    """Mean words per chunk text (BM25's length normalisation)."""
    stem_frequency: dict[str, int]
    """Stem -> chunks holding it (text or headings)."""
    word_frequency: dict[str, int]
    """Folded word -> chunks holding it: the vocabulary typos are corrected to."""
    stem_forms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Stem -> the collection's words with that stem."""
    words_by_length: dict[int, list[str]] = field(default_factory=dict)
    """The vocabulary's words of letters (no stopwords) by length, sorted:
    what a typo may be corrected to."""
    memo: dict[int, Any] = field(default_factory=dict, compare=False, repr=False)
    """What searches computed from this state's chunks, by chunk id
    (store.knowledge.search keeps the analysed chunks here)."""

    def vocabulary_near(self, length: int, spread: int) -> list[str]:
        """Vocabulary words whose length is within `spread` of `length`."""
        found: list[str] = []
        for size in range(max(1, length - spread), length + spread + 1):
            found.extend(self.words_by_length.get(size, ()))
        return found


def fingerprint(session: Session, *, collection: str) -> Fingerprint:
    """What changes whenever the collection's chunks do, in three index
    lookups (migration 0003). Chunks change only with their document: a
    deleted document lowers the count, an ingested one moves the latest
    update, and the highest chunk id moves with any new chunk. The update
    time also tells apart chunk ids SQLite hands out again after a
    rolled-back transaction (a search inside it cached its statistics)."""
    documents, updated, highest = (
        session.connection().execute(_FINGERPRINT_SQL, {"collection": collection}).one()
    )
    return int(documents), str(updated), int(highest)


def compute(session: Session, *, collection: str, print_: Fingerprint) -> CollectionStatistics:
    """Read every chunk of the collection once and count its words and stems."""
    stem_frequency: Counter[str] = Counter()
    word_frequency: Counter[str] = Counter()
    total_length = 0
    chunks = 0
    # yield_per for this statement only (on the connection it would stay set).
    result = session.connection().execute(
        _CHUNKS_SQL, {"collection": collection}, execution_options={"yield_per": _BATCH}
    )
    stem_of: dict[str, str] = {}
    for title, text in result:
        body = words(text)
        unique = set(body)
        unique.update(words(title or ""))
        word_frequency.update(unique)
        for word in unique.difference(stem_of):
            stem_of[word] = stem(word)
        # C-level loops only: this runs for every chunk of the collection.
        stem_frequency.update(set(map(stem_of.__getitem__, unique)))
        total_length += len(body)
        chunks += 1
    by_length: dict[int, list[str]] = {}
    forms: dict[str, list[str]] = {}
    for word in sorted(word_frequency):
        forms.setdefault(stem_of[word], []).append(word)
        if word.isalpha() and not is_stopword(word):
            by_length.setdefault(len(word), []).append(word)
    return CollectionStatistics(
        fingerprint=print_,
        chunks=chunks,
        avg_length=total_length / chunks if chunks else 0.0,
        stem_frequency=dict(stem_frequency),
        word_frequency=dict(word_frequency),
        words_by_length=by_length,
        stem_forms={key: tuple(found) for key, found in forms.items()},
    )


class StatisticsCache:
    """The statistics of recently searched collections, recomputed when
    their fingerprint changes. Safe to share between threads: a
    recomputation runs outside the lock, and the last one stored wins."""

    def __init__(self, max_collections: int = _MAX_CACHED_COLLECTIONS) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], CollectionStatistics] = {}
        self._max = max_collections

    def get(self, session: Session, *, collection: str) -> CollectionStatistics:
        bind = session.get_bind()
        key = (_database_key(bind), collection)
        current = fingerprint(session, collection=collection)
        with self._lock:
            cached = self._by_key.get(key)
        if cached is not None and cached.fingerprint == current:
            return cached
        computed = compute(session, collection=collection, print_=current)
        with self._lock:
            if len(self._by_key) >= self._max and key not in self._by_key:
                self._by_key.pop(next(iter(self._by_key)))
            self._by_key[key] = computed
        return computed

    def clear(self) -> None:
        with self._lock:
            self._by_key.clear()


def _database_key(bind: sa.Engine | sa.Connection) -> str:
    """Which database a session is on: URL plus search path (tests and
    deployments may hold several schemas of one PostgreSQL server)."""
    engine = bind.engine if isinstance(bind, sa.Connection) else bind
    return engine.url.render_as_string(hide_password=True)


CACHE = StatisticsCache()
"""The process's statistics (the API, a worker, the CLI)."""
