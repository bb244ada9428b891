"""The knowledge store on SQLite and PostgreSQL: ingest, replace, no-op,
delete, listings, and a full-text search that no user input can break."""

from __future__ import annotations

import pytest
from sqlalchemy import func, text
from sqlmodel import Session, col, select

from store.knowledge.crud import (
    delete_document,
    ensure_collection,
    get_document,
    ingest_document,
    list_chunks,
    list_collections,
    list_documents,
)
from store.knowledge.embeddings import chunks_missing_embeddings, store_embeddings
from store.knowledge.errors import (
    EmbeddingMismatchError,
    EmptyDocumentError,
    EmptyQueryError,
    InvalidDocumentError,
    InvalidKnowledgeNameError,
    UnknownCollectionError,
)
from store.knowledge.search import (
    HYBRID_TEXT_WEIGHT,
    MAX_QUERY_TERMS,
    fts5_query,
    search,
    search_terms,
)
from store.knowledge.tables import KnowledgeChunk
from tests.retrieval.conftest import COLLECTION, ingest_help_center

REFUNDS_V1 = """# Refunds

## Timing

Refunds reach your card within 5 to 10 business days.

## Gift cards

A zebracorn gift card cannot be refunded.
"""

REFUNDS_V2 = """# Refunds

## Timing

Refunds reach your card within 3 business days.
"""


def ingest(session: Session, text: str = REFUNDS_V1, **changes: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = {
        "collection": "kb",
        "name": "refunds.md",
        "source": "docs/refunds.md",
        "text": text,
    }
    return ingest_document(session, **(values | changes))  # type: ignore[arg-type]


def chunk_ids(session: Session, name: str = "refunds.md") -> list[int]:
    return [c.id for c in list_chunks(session, collection="kb", document=name)]  # type: ignore[misc]


def test_ingest_stores_chunks_with_citable_positions(session: Session) -> None:
    result = ingest(session)
    assert (result.chunks, result.replaced, result.unchanged) == (2, False, False)
    doc = result.document
    assert (doc.collection, doc.name, doc.source, doc.title) == (
        "kb",
        "refunds.md",
        "docs/refunds.md",
        "Refunds",
    )
    assert len(doc.content_hash) == 64 and doc.chunk_count == 2
    chunks = list_chunks(session, collection="kb", document="refunds.md")
    assert [(c.position, c.title) for c in chunks] == [
        (0, "Refunds > Timing"),
        (1, "Refunds > Gift cards"),
    ]
    assert all(c.embedding is None for c in chunks)
    [hit] = search(session, collection="kb", query="zebracorn", top_k=5)
    assert (hit.id, hit.document, hit.source, hit.position, hit.title) == (
        "refunds.md#1",
        "refunds.md",
        "docs/refunds.md",
        1,
        "Refunds > Gift cards",
    )
    assert hit.text == "A zebracorn gift card cannot be refunded." and hit.score > 0


def test_same_content_again_is_a_no_op(session: Session) -> None:
    first = ingest(session)
    before = chunk_ids(session)
    again = ingest(session, source="https://help.example/refunds")
    assert (again.chunks, again.replaced, again.unchanged) == (2, False, True)
    assert chunk_ids(session) == before  # nothing rewritten
    assert again.document.id == first.document.id
    assert again.document.source == "https://help.example/refunds"  # the new source is kept


def test_changed_content_replaces_the_chunks_and_the_index(session: Session) -> None:
    ingest(session)
    old_ids = chunk_ids(session)
    result = ingest(session, REFUNDS_V2)
    assert (result.chunks, result.replaced, result.unchanged) == (1, True, False)
    assert result.document.chunk_count == 1
    assert not set(chunk_ids(session)) & set(old_ids)
    # The full-text index follows: the removed passage is gone, the new text is found.
    assert search(session, collection="kb", query="zebracorn", top_k=5) == []
    [hit] = search(session, collection="kb", query="3 business days", top_k=5)
    assert "within 3 business days" in hit.text
    total = session.exec(select(func.count()).select_from(KnowledgeChunk)).one()
    assert total == 1
    # A new title alone is a change too.
    retitled = ingest(session, REFUNDS_V2, title="Money back")
    assert retitled.replaced and retitled.document.title == "Money back"


def test_delete_document_removes_it_from_search(session: Session) -> None:
    ingest(session)
    ingest(session, "Shipping takes 3 days; zebracorn boxes too.", name="shipping.txt")
    assert delete_document(session, collection="kb", name="refunds.md") is True
    assert delete_document(session, collection="kb", name="refunds.md") is False
    assert [h.document for h in search(session, collection="kb", query="zebracorn", top_k=5)] == [
        "shipping.txt"
    ]
    assert get_document(session, collection="kb", name="refunds.md") is None


def test_collections_are_searched_apart(session: Session) -> None:
    ingest(session)
    ingest(session, collection="other")
    ingest(session, "Zebracorn sightings.", collection="other", name="zoo.txt")
    hits = search(session, collection="kb", query="zebracorn", top_k=5)
    assert [h.id for h in hits] == ["refunds.md#1"]
    other = search(session, collection="other", query="zebracorn", top_k=5)
    assert {h.document for h in other} == {"refunds.md", "zoo.txt"}


def test_listings_count_documents_and_chunks(session: Session) -> None:
    results = ingest_help_center(session)
    ensure_collection(session, name="empty")
    listed = {c.name: c for c in list_collections(session)}
    assert set(listed) == {COLLECTION, "empty"}
    assert listed[COLLECTION].documents == len(results)
    assert listed[COLLECTION].chunks == sum(r.chunks for r in results)
    assert listed[COLLECTION].embedded_chunks == 0
    assert (listed["empty"].documents, listed["empty"].chunks) == (0, 0)
    names = [d.name for d in list_documents(session, collection=COLLECTION)]
    assert names == sorted(r.document.name for r in results)
    with pytest.raises(UnknownCollectionError, match=r"'nope'.*empty, help_center"):
        list_documents(session, collection="nope")


def test_embedding_alias_change_clears_embeddings(session: Session) -> None:
    ingest(session)
    ensure_collection(session, name="kb", embedding_alias="embed")
    missing = chunks_missing_embeddings(session, collection="kb")
    assert missing[0][1].startswith("Refunds > Timing\n\n")
    store_embeddings(session, embeddings={chunk_id: [3.0, 4.0] for chunk_id, _ in missing})
    assert chunks_missing_embeddings(session, collection="kb") == []
    assert list_chunks(session, collection="kb", document="refunds.md")[0].embedding == [0.6, 0.8]
    ensure_collection(session, name="kb")  # None keeps the alias and the vectors
    assert chunks_missing_embeddings(session, collection="kb") == []
    collection = ensure_collection(session, name="kb", embedding_alias="other-embed")
    assert collection.embedding_alias == "other-embed"
    assert len(chunks_missing_embeddings(session, collection="kb")) == 2


def test_embeddings_given_at_ingest_must_match_the_chunks(session: Session) -> None:
    with pytest.raises(EmbeddingMismatchError, match="2 chunks but 1 embeddings"):
        ingest(session, embeddings=[[1.0, 0.0]])
    result = ingest(session, embeddings=[[1.0, 0.0], [0.0, 2.0]])
    assert [c.embedding for c in list_chunks(session, collection="kb", document="refunds.md")] == [
        [1.0, 0.0],
        [0.0, 1.0],
    ]
    assert result.chunks == 2


INVALID_DOCUMENT_NAMES = [
    "",
    "has space.md",
    "faq#1.md",
    "[x].md",
    "../etc/passwd",
    "a/../b.md",
    "-x.md",
    "é.md",
    "x" * 256,
]
INVALID_COLLECTION_NAMES = ["", "has space", "a/b", "x" * 101]


def test_invalid_names_are_refused(session: Session) -> None:
    for name in INVALID_DOCUMENT_NAMES:
        with pytest.raises(InvalidKnowledgeNameError, match="invalid document name"):
            ingest(session, name=name)
    for collection in INVALID_COLLECTION_NAMES:
        with pytest.raises(InvalidKnowledgeNameError, match="invalid collection name"):
            ingest(session, collection=collection)
    assert list_collections(session) == []


def test_empty_documents_are_refused(session: Session) -> None:
    with pytest.raises(EmptyDocumentError, match=r"'refunds\.md' has no text"):
        ingest(session, " \n\t")
    with pytest.raises(EmptyDocumentError, match="only headings"):
        ingest(session, "# Title\n\n## Section\n")
    assert session.exec(select(func.count()).select_from(KnowledgeChunk)).one() == 0


def test_text_that_is_not_text_is_refused(session: Session) -> None:
    """NUL characters (PostgreSQL cannot store them) and lone surrogates are
    refused with the field named, never a database error."""
    cases = [
        ({"text": "binary\x00file"}, "the text contains NUL"),
        ({"title": "T\x00"}, "the title contains NUL"),
        ({"source": "s\x00"}, "the source contains NUL"),
        ({"text": "broken \ud800 text"}, "the text is not valid Unicode"),
    ]
    for changes, message in cases:
        with pytest.raises(InvalidDocumentError, match=message):
            ingest(session, **changes)
    with pytest.raises(InvalidDocumentError, match="the limit is 2,000,000"):
        ingest(session, "x" * 2_000_001)
    assert list_collections(session) == []


def test_names_no_collection_can_have_are_unknown_without_a_query(session: Session) -> None:
    ingest(session)
    for name in ["bad\x00name", "", "x" * 500, "a b", "\ud800"]:
        with pytest.raises(UnknownCollectionError, match="collections: kb"):
            search(session, collection=name, query="refund", top_k=3)
    assert get_document(session, collection="kb", name="refunds\x00.md") is None
    assert delete_document(session, collection="kb", name="\ud800") is False


def test_hybrid_search_fuses_full_text_and_vectors(session: Session) -> None:
    """Weighted fusion of the 0..1 scores: a chunk only the vectors find still
    ranks, and a chunk both rankings agree on comes first."""
    ingest(session, "Zebracorn rules.\n\nUnrelated words here.", name="a.txt")
    ingest(session, "Nothing lexical in common.", name="b.txt")
    ingest(session, "Zebracorn again.", name="c.txt")
    vectors = {"a.txt": [1.0, 0.0], "b.txt": [0.6, 0.8], "c.txt": [0.0, 1.0]}
    for name, vector in vectors.items():
        [chunk] = list_chunks(session, collection="kb", document=name)
        store_embeddings(session, embeddings={chunk.id: vector})  # type: ignore[dict-item]
    fts = search(session, collection="kb", query="zebracorn", top_k=5)
    assert {p.document for p in fts} == {"a.txt", "c.txt"}
    hybrid = search(session, collection="kb", query="zebracorn", top_k=5, query_embedding=[2, 0])
    # a.txt: full-text hit and nearest vector; b.txt: vectors only; c.txt: full text only.
    assert hybrid[0].document == "a.txt"
    assert {p.document for p in hybrid} == {"a.txt", "b.txt", "c.txt"}
    fts_a = next(p.score for p in fts if p.document == "a.txt")
    assert hybrid[0].score == pytest.approx(
        HYBRID_TEXT_WEIGHT * fts_a + (1 - HYBRID_TEXT_WEIGHT) * 1.0, abs=1e-6
    )
    # A query vector of another dimension matches nothing but full text.
    other = search(session, collection="kb", query="zebracorn", top_k=5, query_embedding=[1, 0, 0])
    assert {p.document for p in other} == {"a.txt", "c.txt"}


# -- search robustness ----------------------------------------------------------------

ODD_QUERIES = [
    "refund?!",
    '"refund',
    'refund"s "gift card',
    "refund AND",
    "AND",
    "OR NOT NEAR",
    "NEAR(refund gift, 2)",
    "refund*",
    "^refund -gift +card",
    "title:refund",
    "refund & | ! <-> :*",
    "refund'); DROP TABLE knowledge_chunks; --",
    "🙂 refund 🎁",
    "réfund naïve café",
    "refund\x00card",
    "   refund   ",
    "refund " * 500,
    "refund " + " ".join(f"word{i}" for i in range(200)),
]


def test_odd_queries_never_break_the_search(session: Session) -> None:
    ingest(session)
    for query in ODD_QUERIES:
        hits = search(session, collection="kb", query=query, top_k=3)
        assert len(hits) <= 3, query
        if "refund" in query.lower():
            assert hits, f"no hit for {query!r}"
    # The table is still there (nothing was executed from a query).
    assert session.exec(select(func.count()).select_from(KnowledgeChunk)).one() == 2


def test_a_query_without_words_is_a_clear_error(session: Session) -> None:
    ingest(session)
    for query in ["", "   ", "?!", "🙂🎁", "\"'()*:^", "\n\t"]:
        with pytest.raises(EmptyQueryError, match="has no word to search for"):
            search(session, collection="kb", query=query, top_k=3)


def test_unknown_collection_names_the_known_ones(session: Session) -> None:
    ingest(session)
    with pytest.raises(UnknownCollectionError, match=r"'nope' \(collections: kb\)"):
        search(session, collection="nope", query="refund", top_k=3)


def test_top_k_bounds_the_results_and_ranking_is_stable(session: Session) -> None:
    ingest_help_center(session)
    five = search(session, collection=COLLECTION, query="refund card order", top_k=5)
    assert len(five) == 5
    assert [p.score for p in five] == sorted((p.score for p in five), reverse=True)
    two = search(session, collection=COLLECTION, query="refund card order", top_k=2)
    assert [p.id for p in two] == [p.id for p in five[:2]]
    with pytest.raises(ValueError, match="top_k"):
        search(session, collection=COLLECTION, query="refund", top_k=0)


def test_search_terms_drop_noise_but_keep_meaning() -> None:
    assert search_terms("How do I get my REFUND?!") == ["refund"]
    assert search_terms("the and of") == []  # stopwords only: nothing to search for
    assert search_terms("2 charges, 1 order") == ["2", "charges", "1", "order"]
    assert search_terms("don't") == ["don"]
    assert len(search_terms(" ".join(f"w{i}" for i in range(100)))) == MAX_QUERY_TERMS
    assert fts5_query(["refund", 'a"b']) == '"refund" OR "a""b"'


def test_full_text_index_is_in_place(session: Session) -> None:
    """The index exists for the backend (FTS5 table or GIN-indexed tsvector)."""
    ingest(session)
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT count(*) FROM knowledge_chunks_fts")).scalar_one()
        assert rows == 2
    else:
        indexdef = conn.execute(
            text(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "AND indexname = 'ix_knowledge_chunks_search_vector'"
            )
        ).scalar_one()
        assert "gin (search_vector)" in indexdef
        vector = conn.execute(
            select(text("search_vector::text"))
            .select_from(KnowledgeChunk)
            .where(col(KnowledgeChunk.position) == 1)
        ).scalar_one()
        assert "'zebracorn':" in vector and "'gift':" in vector
