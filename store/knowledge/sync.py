"""Keep a collection in step with a folder: add, update, rename, remove.

A document's identity is its path relative to the folder ingested (the
`name`); its content hash says whether it changed. Syncing a set of
documents into a collection, in one transaction:

- a new name is added, a changed one updated, an unchanged one left alone;
- with `prune`, the set is the collection's whole content: documents whose
  name is not in it are removed, except that a removed document whose
  content comes back under a new name is renamed in place (a moved or
  renamed file, or the same files ingested from a parent folder, so
  `help_center/refunds.md` after `refunds.md`): its chunks and embeddings are
  kept and its citations follow the new name;
- content that would be stored twice under two names is refused
  (DuplicateDocumentError): two files of the set with the same content, or a
  new name whose content stays in the collection under another name (without
  `prune` nothing says the other name is gone). That is what a parent-folder
  ingest without `prune` meets, and the error says to prune or to ingest
  from the same folder as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from sqlmodel import Session, select

from store.knowledge.crud import (
    PreparedDocument,
    delete_documents,
    ensure_collection,
    store_document,
)
from store.knowledge.errors import DuplicateDocumentError, InvalidDocumentError
from store.knowledge.tables import KnowledgeDocument
from store.models import utcnow

Status = Literal["added", "updated", "unchanged", "renamed", "removed"]
STATUSES: tuple[Status, ...] = ("added", "updated", "unchanged", "renamed", "removed")


@dataclass(frozen=True)
class SyncedDocument:
    name: str
    status: Status
    chunks: int
    renamed_from: str | None = None
    """For a renamed document: the name it had."""


@dataclass(frozen=True)
class SyncReport:
    collection: str
    documents: list[SyncedDocument] = field(default_factory=list)
    """Every document of the set, then the removed ones, by name."""

    def count(self, status: Status) -> int:
        return sum(1 for d in self.documents if d.status == status)

    def counts(self) -> dict[Status, int]:
        return {status: self.count(status) for status in STATUSES}


def sync_documents(
    session: Session,
    *,
    collection: str,
    documents: Sequence[PreparedDocument],
    prune: bool = False,
    embedding_alias: str | None = None,
) -> SyncReport:
    """Bring `collection` (created if missing) in step with `documents`.

    See the module docstring. Raises before writing anything the caller
    would keep: InvalidDocumentError for a name given twice,
    DuplicateDocumentError for content stored twice; the caller's
    transaction is rolled back on any error, so a sync is all or nothing.
    """
    _check_unique_names(documents)
    _check_unique_content(collection, documents)
    ensure_collection(session, name=collection, embedding_alias=embedding_alias)
    # Every stored document, loaded once: an unchanged document or a rename
    # then costs no query of its own, and the ORM batches the updates.
    rows = {
        row.name: row
        for row in session.exec(
            select(KnowledgeDocument).where(KnowledgeDocument.collection == collection)
        )
    }
    stored = {name: row.content_hash for name, row in rows.items()}
    incoming = {d.name for d in documents}
    gone = sorted(name for name in stored if name not in incoming)
    by_hash: dict[str, list[str]] = {}
    for name in gone:
        by_hash.setdefault(stored[name], []).append(name)

    renames: dict[str, str] = {}  # new name -> old name
    twins: list[tuple[str, str]] = []
    for document in documents:
        if stored.get(document.name) == document.content_hash:
            continue  # unchanged
        candidates = by_hash.get(document.content_hash, [])
        if not candidates:
            continue
        if not prune:
            twins.append((document.name, candidates[0]))
        elif document.name not in stored:
            renames[document.name] = candidates.pop(0)
        # else: an existing name takes the content of a document that prune removes.
    if twins:
        raise DuplicateDocumentError(
            collection,
            twins,
            "the folder was ingested before from another root, or the files were renamed: "
            "ingest it with prune (documents gone from the folder are removed, moved ones "
            "renamed in place), or from the same folder as before",
        )

    now = utcnow()
    report: list[SyncedDocument] = []
    for document in documents:
        old = renames.get(document.name)
        row = rows.get(old or document.name)
        if row is not None and row.content_hash == document.content_hash:
            # Unchanged content, maybe under a new name or from a new source.
            if old is not None:
                row.name, row.updated_at = document.name, now
            if row.source != document.source:
                row.source = document.source
            session.add(row)
            status: Status = "renamed" if old is not None else "unchanged"
            report.append(SyncedDocument(document.name, status, row.chunk_count, old))
            continue
        result = store_document(session, collection=collection, document=document)
        status = "updated" if result.replaced else "added"
        report.append(SyncedDocument(document.name, status, result.chunks))
    session.flush()
    if prune:
        removed = [name for name in gone if name not in renames.values()]
        delete_documents(session, collection=collection, names=removed)
        report.extend(SyncedDocument(name, "removed", rows[name].chunk_count) for name in removed)
    return SyncReport(collection, report)


def _check_unique_names(documents: Sequence[PreparedDocument]) -> None:
    seen: set[str] = set()
    twice = sorted({d.name for d in documents if d.name in seen or seen.add(d.name)})
    if twice:
        raise InvalidDocumentError(
            f"several documents would be stored as {', '.join(twice)}: "
            "ingest them into different collections, or from one folder"
        )


def _check_unique_content(collection: str, documents: Sequence[PreparedDocument]) -> None:
    first: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for document in documents:
        other = first.setdefault(document.content_hash, document.name)
        if other != document.name:
            pairs.append((document.name, other))
    if pairs:
        raise DuplicateDocumentError(
            collection, pairs, "keep one copy of each (identical passages would fill the top k)"
        )
