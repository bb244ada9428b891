"""Ingest in sync (store.knowledge.sync) on SQLite and PostgreSQL: unchanged
files are a no-op, prune removes what is gone, a renamed file and a folder
ingested again from its parent are renamed in place (never stored twice),
a UTF-8 byte-order mark does not hide the first heading."""

from __future__ import annotations

import pytest
from sqlmodel import Session, col, select

from store.knowledge.crud import (
    PreparedDocument,
    ingest_document,
    list_chunks,
    list_documents,
    prepare_document,
)
from store.knowledge.decoding import decode_document
from store.knowledge.embeddings import store_embeddings
from store.knowledge.errors import DuplicateDocumentError, InvalidDocumentError
from store.knowledge.search import search
from store.knowledge.sync import SyncReport, sync_documents
from store.knowledge.tables import KnowledgeChunk
from tests.retrieval.conftest import HELP_CENTER, help_center_files

KNOWLEDGE = HELP_CENTER.parent


def folder(prefix: str = "") -> list[PreparedDocument]:
    """The help center as the CLI names it when ingested from `prefix`'s folder."""
    return [
        prepare_document(
            name=f"{prefix}{path.name}", source=str(path), text=path.read_text("utf-8")
        )
        for path in help_center_files()
    ]


def doc(name: str, text: str) -> PreparedDocument:
    return prepare_document(name=name, source=f"docs/{name}", text=text)


def statuses(report: SyncReport) -> dict[str, str]:
    return {d.name: d.status for d in report.documents}


def names(session: Session, collection: str) -> set[str]:
    return {d.name for d in list_documents(session, collection=collection)}


def chunk_ids(session: Session, collection: str) -> set[int]:
    ids = session.exec(
        select(KnowledgeChunk.id).where(col(KnowledgeChunk.collection) == collection)
    )
    return {int(i) for i in ids if i is not None}


def test_unchanged_is_a_no_op_and_counts_are_reported(session: Session) -> None:
    first = sync_documents(session, collection="s1", documents=folder())
    assert first.counts() == {
        "added": 14,
        "updated": 0,
        "unchanged": 0,
        "renamed": 0,
        "removed": 0,
    }
    before = chunk_ids(session, "s1")
    again = sync_documents(session, collection="s1", documents=folder())
    assert set(statuses(again).values()) == {"unchanged"}
    assert chunk_ids(session, "s1") == before  # nothing rewritten

    changed = [*folder()[:-1], doc("warranty.md", "# Warranty\n\nTwo years on everything.")]
    report = sync_documents(session, collection="s1", documents=changed)
    assert (report.count("updated"), report.count("unchanged")) == (1, 13)
    assert statuses(report)["warranty.md"] == "updated"


def test_prune_removes_documents_gone_from_the_folder(session: Session) -> None:
    sync_documents(session, collection="s2", documents=folder())
    kept = [d for d in folder() if d.name not in ("gift_cards.md", "warranty.md")]

    without = sync_documents(session, collection="s2", documents=kept)
    assert without.count("removed") == 0 and len(names(session, "s2")) == 14

    pruned = sync_documents(session, collection="s2", documents=kept, prune=True)
    removed = {d.name: d.chunks for d in pruned.documents if d.status == "removed"}
    assert set(removed) == {"gift_cards.md", "warranty.md"} and all(removed.values())
    assert names(session, "s2") == {d.name for d in kept}
    assert list_chunks(session, collection="s2", document="gift_cards.md") == []
    hits = search(session, collection="s2", query="gift card balance", top_k=10)
    assert hits and all(h.document != "gift_cards.md" for h in hits)


def test_a_renamed_file_is_renamed_in_place_with_prune(session: Session) -> None:
    sync_documents(session, collection="s3", documents=folder())
    [refunds] = list_chunks(session, collection="s3", document="refunds.md")[:1]
    assert refunds.id is not None
    store_embeddings(session, embeddings={refunds.id: [1.0, 0.0]})
    ids_before = chunk_ids(session, "s3")
    renamed = [
        prepare_document(name="money-back.md", source="docs/money-back.md", text=d.text)
        if d.name == "refunds.md"
        else d
        for d in folder()
    ]

    with pytest.raises(DuplicateDocumentError, match=r"money-back\.md = refunds\.md.*prune"):
        sync_documents(session, collection="s3", documents=renamed)

    report = sync_documents(session, collection="s3", documents=renamed, prune=True)
    [moved] = [d for d in report.documents if d.name == "money-back.md"]
    assert (moved.status, moved.renamed_from) == ("renamed", "refunds.md")
    assert report.count("removed") == 0 and "refunds.md" not in names(session, "s3")
    assert chunk_ids(session, "s3") == ids_before  # chunks and their embeddings kept
    first = list_chunks(session, collection="s3", document="money-back.md")[0]
    assert (first.id, first.embedding) == (refunds.id, [1.0, 0.0])
    hits = search(session, collection="s3", query="refund store credit", top_k=10)
    cited = {h.document: h.source for h in hits}
    assert cited["money-back.md"] == "docs/money-back.md" and "refunds.md" not in cited


def test_ingesting_the_parent_folder_never_stores_a_document_twice(session: Session) -> None:
    sync_documents(session, collection="s4", documents=folder())
    brand = KNOWLEDGE / "brand_guide.md"
    parent = [
        prepare_document(name="brand_guide.md", source=str(brand), text=brand.read_text("utf-8")),
        *folder("help_center/"),
    ]

    with pytest.raises(DuplicateDocumentError) as refused:
        sync_documents(session, collection="s4", documents=parent)
    assert len(refused.value.pairs) == 14
    assert ("help_center/refunds.md", "refunds.md") in refused.value.pairs
    assert "from the same folder as before" in str(refused.value)

    report = sync_documents(session, collection="s4", documents=parent, prune=True)
    assert report.counts() == {
        "added": 1,
        "updated": 0,
        "unchanged": 0,
        "renamed": 14,
        "removed": 0,
    }
    assert names(session, "s4") == {d.name for d in parent}
    hits = search(session, collection="s4", query="how long does a refund take", top_k=5)
    texts = [h.text for h in hits]
    assert len(set(texts)) == len(texts)  # no passage twice
    assert all(h.document.startswith("help_center/") for h in hits)


def test_an_updated_document_may_not_copy_one_that_stays(session: Session) -> None:
    sync_documents(
        session, collection="s5", documents=[doc("a.md", "# A\n\nAlpha."), doc("b.md", "# B\n\nB.")]
    )
    copy = [doc("b.md", "# A\n\nAlpha.")]
    with pytest.raises(DuplicateDocumentError, match=r"b\.md = a\.md"):
        sync_documents(session, collection="s5", documents=copy)
    # With prune a.md goes, so b.md may take its content.
    report = sync_documents(session, collection="s5", documents=copy, prune=True)
    assert statuses(report) == {"b.md": "updated", "a.md": "removed"}


def test_the_same_content_twice_in_one_folder_is_refused(session: Session) -> None:
    twins = [doc("one.md", "# Same\n\nText."), doc("two.md", "# Same\n\nText.")]
    with pytest.raises(DuplicateDocumentError, match=r"two\.md = one\.md"):
        sync_documents(session, collection="s6", documents=twins)
    with pytest.raises(InvalidDocumentError, match=r"several documents would be stored as a\.md"):
        sync_documents(session, collection="s6", documents=[doc("a.md", "A."), doc("a.md", "B.")])


def test_ingest_document_refuses_a_duplicate_when_asked(session: Session) -> None:
    ingest_document(session, collection="s7", name="a.md", source="a", text="# A\n\nAlpha.")
    with pytest.raises(DuplicateDocumentError, match=r"delete 'a\.md' first"):
        ingest_document(
            session,
            collection="s7",
            name="b.md",
            source="b",
            text="# A\n\nAlpha.",
            allow_duplicate=False,
        )
    assert names(session, "s7") == {"a.md"}


def test_a_byte_order_mark_does_not_hide_the_first_heading(session: Session) -> None:
    raw = b"# Store hours\n\n## Weekdays\n\nOpen 9 to 5.\n"
    text = decode_document(b"\xef\xbb\xbf" + raw, name="hours.md")
    assert text == raw.decode()
    report = sync_documents(session, collection="s8", documents=[doc("hours.md", text)])
    assert statuses(report) == {"hours.md": "added"}
    # A text decoded as plain utf-8 still carries U+FEFF: dropped at ingest.
    result = ingest_document(
        session, collection="s8b", name="hours.md", source="x", text="\ufeff" + raw.decode()
    )
    assert result.document.title == "Store hours"
    [chunk] = list_chunks(session, collection="s8b", document="hours.md")
    assert chunk.title == "Store hours > Weekdays" and not chunk.text.startswith("\ufeff")
    [same] = list_documents(session, collection="s8")
    assert same.content_hash == result.document.content_hash


def test_undecodable_bytes_name_the_file_and_the_byte() -> None:
    with pytest.raises(InvalidDocumentError) as refused:
        decode_document(b"line one\ncaf\xe9\n", name="docs/menu.txt")
    message = str(refused.value)
    assert "docs/menu.txt is not UTF-8 text" in message
    assert "byte 0xe9 at offset 12 (line 2)" in message
