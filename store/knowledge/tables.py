"""The knowledge tables, their public views and the full-text index.

The full-text index is created with the chunk table (by `create_all`, which
sees these tables because `store.schema` imports this module) and kept in
sync by the database: SQLite triggers feed the FTS5 table, and PostgreSQL's
tsvector is a generated column. Nothing in the CRUD can forget to update it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from store.models import UTCDateTime, utcnow

SQLITE_FTS_TABLE = "knowledge_chunks_fts"
PG_SEARCH_COLUMN = "search_vector"
PG_TS_CONFIG = "english"

_NullableJSON = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
"""JSON whose Python None is SQL NULL (not JSON `null`), so `IS NULL` finds
chunks that still need an embedding."""


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
        # The statistics' fingerprint: latest update of a collection (migration 0003).
        sa.Index("ix_knowledge_documents_collection_updated_at", "collection", "updated_at"),
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
        # The statistics' fingerprint: highest chunk id of a collection (migration 0003).
        sa.Index("ix_knowledge_chunks_collection_id", "collection", "id"),
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
