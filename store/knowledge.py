"""Knowledge collections for retrieval: tables, full-text index and CRUD.

A collection holds documents (a help center, a policy handbook); a document
is split into chunks (see `store.chunking`) that retrieval ranks and cites as
`<document>#<position>`. Full-text ranking is the database's own: SQLite FTS5
(bm25) or PostgreSQL full-text search (`ts_rank_cd` over a stored, GIN-indexed
tsvector). A collection with an `embedding_alias` also keeps an embedding per
chunk, filled lazily by the retrieve activity, and is ranked by reciprocal-
rank fusion of the full-text ranking and cosine similarity.

The full-text index is created with the chunk table (by `create_all`) and
kept in sync by the database: SQLite triggers feed the FTS5 table, and
PostgreSQL's tsvector is a generated column. Nothing in the CRUD below can
forget to update it.

Like `store.crud`, functions are keyword-only, take the caller's Session and
never commit it.
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, Session, SQLModel, col, delete, func, select, update

from core.passages import Passage
from store.chunking import chunk_document, is_markdown, markdown_title
from store.engine import backend_insert
from store.errors import StoreError
from store.models import UTCDateTime, utcnow

COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
DOCUMENT_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_./()+,=@~-]*$"
"""Document names become citation ids (`refunds.md#2`): no `#`, brackets or spaces."""
MAX_DOCUMENT_CHARS = 2_000_000
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
CHUNKER_VERSION = "1"
"""Part of the content hash: a changed chunker re-chunks documents on re-ingest."""

SQLITE_FTS_TABLE = "knowledge_chunks_fts"
PG_SEARCH_COLUMN = "search_vector"
PG_TS_CONFIG = "english"
PG_WEIGHTS = "{0.1, 0.2, 0.5, 1.0}"
"""ts_rank weights of D, C, B (text), A (title): a title word counts twice (TITLE_WEIGHT)."""

_NullableJSON = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
"""JSON whose Python None is SQL NULL (not JSON `null`), so `IS NULL` finds
chunks that still need an embedding."""
_COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)
_DOCUMENT_NAME = re.compile(DOCUMENT_NAME_PATTERN)
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


# -- errors -----------------------------------------------------------------------------


class KnowledgeError(StoreError):
    """Base of the knowledge store's errors."""


class InvalidKnowledgeNameError(KnowledgeError, ValueError):
    """A collection or document name that cannot be stored or cited."""


class UnknownCollectionError(KnowledgeError, LookupError):
    """No collection of that name; `known` lists the ones there are."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = list(known)
        names = ", ".join(self.known) or "none yet"
        super().__init__(f"unknown knowledge collection {name!r} (collections: {names})")


class InvalidDocumentError(KnowledgeError, ValueError):
    """A document that cannot be stored: too large, or not text (NUL
    characters, which PostgreSQL cannot store, or broken Unicode)."""


class EmptyDocumentError(InvalidDocumentError):
    """A document with no text to index."""


class EmptyQueryError(KnowledgeError, ValueError):
    """A query with no word to search for (empty, or only punctuation and symbols)."""

    def __init__(self, query: str) -> None:
        self.query = query
        shown = query if len(query) <= 80 else query[:79] + "…"
        super().__init__(
            f"the query {shown!r} has no word to search for: "
            "give at least one word (letters or digits)"
        )


class EmbeddingMismatchError(KnowledgeError, ValueError):
    """Embeddings that do not line up with the chunks they are for."""


# -- tables -----------------------------------------------------------------------------


class KnowledgeCollection(SQLModel, table=True):
    """A named set of documents searched together."""

    __tablename__ = "knowledge_collections"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    embedding_alias: str | None = Field(default=None, max_length=100)
    """Model-registry alias whose embeddings endpoint ranks this collection;
    None: full-text ranking only."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class KnowledgeDocument(SQLModel, table=True):
    """One ingested document. Re-ingesting a name replaces its chunks."""

    __tablename__ = "knowledge_documents"
    __table_args__ = (
        sa.UniqueConstraint("collection", "name", name="uq_knowledge_documents_collection_name"),
    )

    id: int | None = Field(default=None, primary_key=True)
    collection: str = Field(
        max_length=100, foreign_key="knowledge_collections.name", ondelete="CASCADE", index=True
    )
    name: str = Field(max_length=255)
    """Unique within the collection, e.g. `refunds.md`; the citation's prefix."""
    source: str = Field(max_length=2000)
    """Where the document came from (path or URL given at ingest)."""
    title: str | None = Field(default=None, max_length=500)
    content_hash: str = Field(max_length=64)
    """sha256 of the chunker version, title and text: same hash, same chunks."""
    chunk_count: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class KnowledgeChunk(SQLModel, table=True):
    """A passage of a document: what retrieval ranks, returns and cites."""

    __tablename__ = "knowledge_chunks"
    __table_args__ = (
        sa.UniqueConstraint(
            "document_id", "position", name="uq_knowledge_chunks_document_position"
        ),
        # Ids are never reused (SQLite reuses the highest rowid without it): an
        # embedding computed for a chunk id must not land on a newer chunk.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    document_id: int = Field(foreign_key="knowledge_documents.id", ondelete="CASCADE", index=True)
    collection: str = Field(max_length=100, index=True)
    """Denormalised from the document, so a search filters chunks without a join."""
    position: int
    title: str | None = None
    """Heading path of the chunk (`Refunds > How long a refund takes`)."""
    text: str
    embedding: list[float] | None = Field(default=None, sa_type=_NullableJSON)
    """Unit-length embedding from the collection's alias; None until computed."""


class KnowledgeCollectionPublic(SQLModel):
    name: str
    embedding_alias: str | None
    created_at: datetime
    documents: int
    chunks: int
    embedded_chunks: int


class KnowledgeDocumentPublic(SQLModel):
    collection: str
    name: str
    source: str
    title: str | None
    content_hash: str
    chunk_count: int
    created_at: datetime
    updated_at: datetime


# -- full-text index DDL ----------------------------------------------------------------

_SQLITE_FTS_DDL = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {SQLITE_FTS_TABLE} USING fts5("
    "title, text, content='knowledge_chunks', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS knowledge_chunks_fts_insert AFTER INSERT ON knowledge_chunks "
    f"BEGIN INSERT INTO {SQLITE_FTS_TABLE}(rowid, title, text) "
    "VALUES (new.id, new.title, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS knowledge_chunks_fts_delete AFTER DELETE ON knowledge_chunks "
    f"BEGIN INSERT INTO {SQLITE_FTS_TABLE}({SQLITE_FTS_TABLE}, rowid, title, text) "
    "VALUES ('delete', old.id, old.title, old.text); END",
    "CREATE TRIGGER IF NOT EXISTS knowledge_chunks_fts_update "
    "AFTER UPDATE OF title, text ON knowledge_chunks "
    f"BEGIN INSERT INTO {SQLITE_FTS_TABLE}({SQLITE_FTS_TABLE}, rowid, title, text) "
    "VALUES ('delete', old.id, old.title, old.text); "
    f"INSERT INTO {SQLITE_FTS_TABLE}(rowid, title, text) VALUES (new.id, new.title, new.text); "
    "END",
)

_PG_SEARCH_DDL = (
    f"ALTER TABLE knowledge_chunks ADD COLUMN IF NOT EXISTS {PG_SEARCH_COLUMN} tsvector "
    "GENERATED ALWAYS AS ("
    f"setweight(to_tsvector('{PG_TS_CONFIG}', coalesce(title, '')), 'A') || "
    f"setweight(to_tsvector('{PG_TS_CONFIG}', text), 'B')) STORED",
    "CREATE INDEX IF NOT EXISTS ix_knowledge_chunks_search_vector "
    f"ON knowledge_chunks USING GIN ({PG_SEARCH_COLUMN})",
)


def ensure_search_index(connection: sa.Connection) -> None:
    """Create the full-text index of the chunk table when missing (idempotent).

    Runs by itself when `create_all` creates the chunk table; call it on an
    existing database whose index was dropped.
    """
    dialect = connection.dialect.name
    statements = {"sqlite": _SQLITE_FTS_DDL, "postgresql": _PG_SEARCH_DDL}.get(dialect)
    if statements is None:
        raise NotImplementedError(f"knowledge search supports sqlite and postgresql, not {dialect}")
    for statement in statements:
        connection.exec_driver_sql(statement)


@event.listens_for(KnowledgeChunk.__table__, "after_create")  # type: ignore[attr-defined]
def _create_search_index(_table: sa.Table, connection: sa.Connection, **_kw: Any) -> None:
    ensure_search_index(connection)


# -- validation and helpers -------------------------------------------------------------


def check_collection_name(name: str) -> str:
    if not _valid_name(_COLLECTION_NAME, name, 100):
        raise InvalidKnowledgeNameError(
            f"invalid collection name {name!r}: 1-100 characters, letters, digits, "
            "'_', '.', '-', starting with a letter, digit or '_'"
        )
    return name


def check_document_name(name: str) -> str:
    if not _valid_name(_DOCUMENT_NAME, name, 255) or ".." in name.split("/"):
        raise InvalidKnowledgeNameError(
            f"invalid document name {name!r}: 1-255 characters, letters, digits and "
            "_ . / ( ) + , = @ ~ -, no spaces, '#' or brackets (it becomes the citation "
            "id `name#position`)"
        )
    return name


def _check_text(document: str, field: str, value: str | None) -> None:
    if value is None:
        return
    if "\x00" in value:
        raise InvalidDocumentError(
            f"document {document!r}: the {field} contains NUL characters (is it a binary file?)"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidDocumentError(
            f"document {document!r}: the {field} is not valid Unicode (lone surrogates)"
        ) from None


def content_hash(text: str, title: str | None) -> str:
    """What decides whether re-ingesting a document changes anything."""
    digest = hashlib.sha256()
    for part in (CHUNKER_VERSION, title or "", text):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def _unit(vector: Sequence[float]) -> list[float]:
    values = [float(x) for x in vector]
    if not values or not all(math.isfinite(x) for x in values):
        raise EmbeddingMismatchError("an embedding must be a non-empty list of finite numbers")
    norm = math.sqrt(sum(x * x for x in values))
    return [x / norm for x in values] if norm else values


# -- collections ------------------------------------------------------------------------


def _valid_name(pattern: re.Pattern[str], name: str, max_length: int) -> bool:
    return 0 < len(name) <= max_length and pattern.match(name) is not None


def get_collection(session: Session, *, name: str) -> KnowledgeCollection | None:
    """The collection, or None (also for a name no collection can have,
    which is never sent to the database)."""
    if not _valid_name(_COLLECTION_NAME, name, 100):
        return None
    return session.exec(select(KnowledgeCollection).where(KnowledgeCollection.name == name)).first()


def collection_names(session: Session) -> list[str]:
    return list(
        session.exec(select(KnowledgeCollection.name).order_by(col(KnowledgeCollection.name)))
    )


def require_collection(session: Session, *, name: str) -> KnowledgeCollection:
    """The collection; UnknownCollectionError naming the known ones otherwise."""
    found = get_collection(session, name=name)
    if found is None:
        raise UnknownCollectionError(name, collection_names(session))
    return found


def ensure_collection(
    session: Session, *, name: str, embedding_alias: str | None = None
) -> KnowledgeCollection:
    """The collection, created when missing (safe when two writers race).

    An `embedding_alias` that differs from the stored one replaces it and
    clears the chunks' embeddings: vectors of two models are not comparable.
    None leaves an existing collection's alias as it is.
    """
    check_collection_name(name)
    session.exec(
        backend_insert(session, KnowledgeCollection)
        .values(name=name, embedding_alias=embedding_alias, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["name"])
    )
    found = get_collection(session, name=name)
    assert found is not None
    if embedding_alias is not None and found.embedding_alias != embedding_alias:
        found.embedding_alias = embedding_alias
        session.add(found)
        session.exec(
            update(KnowledgeChunk)
            .where(col(KnowledgeChunk.collection) == name)
            .values(embedding=None)
        )
        session.flush()
    return found


def list_collections(session: Session) -> list[KnowledgeCollectionPublic]:
    """Every collection with its document, chunk and embedded-chunk counts."""
    docs = (
        select(KnowledgeDocument.collection, func.count().label("n"))
        .group_by(col(KnowledgeDocument.collection))
        .subquery()
    )
    chunks = (
        select(
            KnowledgeChunk.collection,
            func.count().label("n"),
            func.count(col(KnowledgeChunk.embedding)).label("embedded"),
        )
        .group_by(col(KnowledgeChunk.collection))
        .subquery()
    )
    rows = session.exec(
        select(
            KnowledgeCollection,
            func.coalesce(docs.c.n, 0),
            func.coalesce(chunks.c.n, 0),
            func.coalesce(chunks.c.embedded, 0),
        )
        .outerjoin(docs, docs.c.collection == KnowledgeCollection.name)
        .outerjoin(chunks, chunks.c.collection == KnowledgeCollection.name)
        .order_by(col(KnowledgeCollection.name))
    ).all()
    return [
        KnowledgeCollectionPublic(
            name=row.name,
            embedding_alias=row.embedding_alias,
            created_at=row.created_at,
            documents=int(n_docs),
            chunks=int(n_chunks),
            embedded_chunks=int(n_embedded),
        )
        for row, n_docs, n_chunks, n_embedded in rows
    ]


# -- documents --------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    document: KnowledgeDocument
    chunks: int
    replaced: bool
    """A document of that name was there with other content; its chunks were replaced."""
    unchanged: bool
    """The same content was there already: nothing was written."""


def get_document(session: Session, *, collection: str, name: str) -> KnowledgeDocument | None:
    if not _valid_name(_DOCUMENT_NAME, name, 255):
        return None
    return session.exec(
        select(KnowledgeDocument).where(
            KnowledgeDocument.collection == collection, KnowledgeDocument.name == name
        )
    ).first()


def ingest_document(
    session: Session,
    *,
    collection: str,
    name: str,
    source: str,
    text: str,
    title: str | None = None,
    embeddings: Sequence[Sequence[float]] | None = None,
) -> IngestResult:
    """Store a document and its chunks in `collection` (created if missing).

    Re-ingesting a name with other content (or another title) replaces its
    chunks; the same content is a no-op (a changed `source` is still
    recorded). The title defaults to a markdown document's first `#` heading.
    `embeddings`, when given, has one vector per chunk (`chunk_document`
    tells how many); otherwise chunks are embedded later, on first retrieval.
    """
    check_document_name(name)
    for field, value in (("text", text), ("title", title), ("source", source)):
        _check_text(name, field, value)
    if not text.strip():
        raise EmptyDocumentError(f"document {name!r} has no text to index")
    if len(text) > MAX_DOCUMENT_CHARS:
        raise InvalidDocumentError(
            f"document {name!r} has {len(text):,} characters; the limit is "
            f"{MAX_DOCUMENT_CHARS:,} (split it into several documents)"
        )
    ensure_collection(session, name=collection)
    if title is None and is_markdown(name):
        title = markdown_title(text)
    new_hash = content_hash(text, title)
    existing = get_document(session, collection=collection, name=name)
    if existing is not None and existing.content_hash == new_hash:
        if existing.source != source:
            existing.source = source
            session.add(existing)
            session.flush()
        return IngestResult(existing, existing.chunk_count, replaced=False, unchanged=True)

    chunks = chunk_document(name, text, title=title)
    if not chunks:
        raise EmptyDocumentError(f"document {name!r} has no text to index (only headings?)")
    if embeddings is not None and len(embeddings) != len(chunks):
        raise EmbeddingMismatchError(
            f"document {name!r} has {len(chunks)} chunks but {len(embeddings)} "
            "embeddings were given"
        )
    now = utcnow()
    values = {
        "collection": collection,
        "name": name,
        "source": source,
        "title": title,
        "content_hash": new_hash,
        "chunk_count": len(chunks),
        "created_at": now,
        "updated_at": now,
    }
    insert = backend_insert(session, KnowledgeDocument).values(**values)
    # One statement, so two writers ingesting the same name end with one row;
    # the row lock it takes (PostgreSQL) or the write lock (SQLite) orders
    # their chunk replacements.
    upsert: Any = insert.on_conflict_do_update(
        index_elements=["collection", "name"],
        set_={
            key: insert.excluded[key]
            for key in ("source", "title", "content_hash", "chunk_count", "updated_at")
        },
    ).returning(sa.column("id"))
    document_id = int(session.exec(upsert).scalar_one())  # type: ignore[call-overload]
    session.exec(delete(KnowledgeChunk).where(col(KnowledgeChunk.document_id) == document_id))
    session.add_all(
        KnowledgeChunk(
            document_id=document_id,
            collection=collection,
            position=chunk.position,
            title=chunk.title,
            text=chunk.text,
            embedding=_unit(embeddings[chunk.position]) if embeddings is not None else None,
        )
        for chunk in chunks
    )
    session.flush()
    document = session.get(KnowledgeDocument, document_id, populate_existing=True)
    assert document is not None
    return IngestResult(document, len(chunks), replaced=existing is not None, unchanged=False)


def list_documents(session: Session, *, collection: str) -> list[KnowledgeDocument]:
    """The documents of a collection by name; UnknownCollectionError if there is none."""
    require_collection(session, name=collection)
    return list(
        session.exec(
            select(KnowledgeDocument)
            .where(KnowledgeDocument.collection == collection)
            .order_by(col(KnowledgeDocument.name))
        )
    )


def list_chunks(session: Session, *, collection: str, document: str) -> list[KnowledgeChunk]:
    """A document's chunks in order (empty when there is no such document)."""
    return list(
        session.exec(
            select(KnowledgeChunk)
            .join(KnowledgeDocument, col(KnowledgeDocument.id) == KnowledgeChunk.document_id)
            .where(KnowledgeDocument.collection == collection, KnowledgeDocument.name == document)
            .order_by(col(KnowledgeChunk.position))
        )
    )


def delete_document(session: Session, *, collection: str, name: str) -> bool:
    """Remove a document and its chunks; False when there was no such document."""
    document = get_document(session, collection=collection, name=name)
    if document is None:
        return False
    session.exec(delete(KnowledgeChunk).where(col(KnowledgeChunk.document_id) == document.id))
    session.delete(document)
    session.flush()
    return True


# -- embeddings -------------------------------------------------------------------------


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
            .values(embedding=_unit(vector))
        )
        updated += result.rowcount
    session.flush()
    return updated


# -- search -----------------------------------------------------------------------------


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
    query = _unit(query_embedding)
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
