"""Collections and documents: create, ingest (chunk and store), list, delete.

Ingesting a document chunks it (`store.chunking`) and replaces its chunks in
one transaction; the full-text index follows by itself (see
`store.knowledge.tables`). Embeddings given at ingest are stored with the
chunks; otherwise the retrieve activity fills them in later. A document's
identity is its name (for a folder, the path relative to the folder
ingested); its content hash decides whether re-ingesting changes anything
and finds the same content under another name (`store.knowledge.sync`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, delete, func, select, update

from store.chunking import chunk_document, is_markdown, markdown_title
from store.engine import backend_insert
from store.knowledge.decoding import without_byte_order_mark
from store.knowledge.embeddings import unit_vector
from store.knowledge.errors import (
    DuplicateDocumentError,
    EmbeddingMismatchError,
    EmptyDocumentError,
    InvalidDocumentError,
    UnknownCollectionError,
)
from store.knowledge.names import (
    check_collection_name,
    check_document_name,
    valid_collection_name,
    valid_document_name,
)
from store.knowledge.tables import (
    KnowledgeChunk,
    KnowledgeCollection,
    KnowledgeCollectionPublic,
    KnowledgeDocument,
)
from store.models import utcnow

MAX_DOCUMENT_CHARS = 2_000_000
CHUNKER_VERSION = "1"
"""Part of the content hash: a changed chunker re-chunks documents on re-ingest."""


# -- collections ------------------------------------------------------------------------


def get_collection(session: Session, *, name: str) -> KnowledgeCollection | None:
    """The collection, or None (also for a name no collection can have,
    which is never sent to the database)."""
    if not valid_collection_name(name):
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


@dataclass(frozen=True)
class PreparedDocument:
    """A document checked and ready to store: what its content hash is made of."""

    name: str
    source: str
    text: str
    title: str | None
    content_hash: str


def prepare_document(
    *, name: str, source: str, text: str, title: str | None = None
) -> PreparedDocument:
    """Check a document (name, text, size) and compute its title and hash.

    A leading byte-order mark is dropped (it would hide a first `#` heading);
    the title defaults to a markdown document's first `#` heading.
    InvalidKnowledgeNameError, InvalidDocumentError, EmptyDocumentError.
    """
    check_document_name(name)
    text = without_byte_order_mark(text)
    for field, value in (("text", text), ("title", title), ("source", source)):
        _check_text(name, field, value)
    if not text.strip():
        raise EmptyDocumentError(f"document {name!r} has no text to index")
    if len(text) > MAX_DOCUMENT_CHARS:
        raise InvalidDocumentError(
            f"document {name!r} has {len(text):,} characters; the limit is "
            f"{MAX_DOCUMENT_CHARS:,} (split it into several documents)"
        )
    if title is None and is_markdown(name):
        title = markdown_title(text)
    return PreparedDocument(name, source, text, title, content_hash(text, title))


@dataclass(frozen=True)
class IngestResult:
    document: KnowledgeDocument
    chunks: int
    replaced: bool
    """A document of that name was there with other content; its chunks were replaced."""
    unchanged: bool
    """The same content was there already: nothing was written."""


def get_document(session: Session, *, collection: str, name: str) -> KnowledgeDocument | None:
    if not valid_document_name(name):
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
    allow_duplicate: bool = True,
) -> IngestResult:
    """Store a document and its chunks in `collection` (created if missing).

    Re-ingesting a name with other content (or another title) replaces its
    chunks; the same content is a no-op (a changed `source` is still
    recorded). The title defaults to a markdown document's first `#` heading.
    `embeddings`, when given, has one vector per chunk (`chunk_document`
    tells how many); otherwise chunks are embedded later, on first retrieval.
    With `allow_duplicate=False`, content already stored under another name
    is refused (DuplicateDocumentError): the API and the CLI refuse it, so
    the same passages cannot fill a search's top k twice over.
    """
    prepared = prepare_document(name=name, source=source, text=text, title=title)
    ensure_collection(session, name=collection)
    if not allow_duplicate:
        twin = duplicate_of(session, collection=collection, document=prepared)
        if twin is not None:
            raise DuplicateDocumentError(
                collection,
                [(name, twin)],
                f"delete {twin!r} first if {name!r} replaces it (a rename), "
                "or ingest the folder with prune, which renames it in place",
            )
    return store_document(session, collection=collection, document=prepared, embeddings=embeddings)


def duplicate_of(session: Session, *, collection: str, document: PreparedDocument) -> str | None:
    """The name of another document of `collection` with the same content, if any."""
    return session.exec(
        select(KnowledgeDocument.name)
        .where(
            KnowledgeDocument.collection == collection,
            KnowledgeDocument.content_hash == document.content_hash,
            KnowledgeDocument.name != document.name,
        )
        .order_by(col(KnowledgeDocument.name))
        .limit(1)
    ).first()


def store_document(
    session: Session,
    *,
    collection: str,
    document: PreparedDocument,
    embeddings: Sequence[Sequence[float]] | None = None,
) -> IngestResult:
    """Store a prepared document in an existing collection (see `ingest_document`)."""
    name, source, text, title = document.name, document.source, document.text, document.title
    new_hash = document.content_hash
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
            embedding=unit_vector(embeddings[chunk.position]) if embeddings is not None else None,
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


def delete_documents(session: Session, *, collection: str, names: Sequence[str]) -> int:
    """Remove the named documents and their chunks; how many there were."""
    if not names:
        return 0
    ids = list(
        session.exec(
            select(KnowledgeDocument.id).where(
                KnowledgeDocument.collection == collection,
                col(KnowledgeDocument.name).in_(list(names)),
            )
        )
    )
    if not ids:
        return 0
    session.exec(delete(KnowledgeChunk).where(col(KnowledgeChunk.document_id).in_(ids)))
    session.exec(delete(KnowledgeDocument).where(col(KnowledgeDocument.id).in_(ids)))
    session.flush()
    return len(ids)


def delete_document(session: Session, *, collection: str, name: str) -> bool:
    """Remove a document and its chunks; False when there was no such document."""
    document = get_document(session, collection=collection, name=name)
    if document is None:
        return False
    session.exec(delete(KnowledgeChunk).where(col(KnowledgeChunk.document_id) == document.id))
    session.delete(document)
    session.flush()
    return True
