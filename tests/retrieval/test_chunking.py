"""Chunking: markdown by headings then paragraphs, plain text by paragraphs,
chunks capped in size with a small overlap, heading paths kept as titles."""

from __future__ import annotations

import itertools

import pytest

from store.chunking import (
    MAX_CHUNK_CHARS,
    OVERLAP_CHARS,
    chunk_document,
    is_markdown,
    markdown_title,
)
from tests.retrieval.conftest import help_center_files

ARTICLE = """---
id: kb-12
---
# Refunds

How refunds work.

## How long refunds take

Cards take 5 to 10 business days.

PayPal takes 2 days.

### Store credit

Store credit is instant.

## Where the refund goes

Back to the original card.
"""


def test_markdown_is_split_on_headings_with_heading_paths() -> None:
    chunks = chunk_document("refunds.md", ARTICLE)
    assert [(c.position, c.title) for c in chunks] == [
        (0, "Refunds"),
        (1, "Refunds > How long refunds take"),
        (2, "Refunds > How long refunds take > Store credit"),
        (3, "Refunds > Where the refund goes"),
    ]
    # Paragraphs of one section that fit together stay together; front matter is dropped.
    assert chunks[1].text == "Cards take 5 to 10 business days.\n\nPayPal takes 2 days."
    assert all("kb-12" not in c.text for c in chunks)
    assert markdown_title(ARTICLE) == "Refunds"


def test_text_before_any_heading_takes_the_document_title() -> None:
    chunks = chunk_document("faq.md", "Intro line.\n\n## Billing\n\nBilled monthly.", title="FAQ")
    assert [(c.title, c.text) for c in chunks] == [
        ("FAQ", "Intro line."),
        ("FAQ > Billing", "Billed monthly."),
    ]
    untitled = chunk_document("faq.md", "Intro line.\n\n## Billing\n\nBilled monthly.")
    assert untitled[0].title is None


def test_headings_inside_code_fences_are_code() -> None:
    text = "# Setup\n\nRun this:\n\n```bash\n# not a heading\n\necho hi\n```\n\nDone."
    chunks = chunk_document("setup.md", text)
    assert len(chunks) == 1
    assert chunks[0].title == "Setup"
    assert "# not a heading\n\necho hi" in chunks[0].text


def test_heading_markup_is_cleaned() -> None:
    chunks = chunk_document("a.md", "# The **`chorus`** CLI ##\n\nText.")
    assert chunks[0].title == "The chorus CLI"


def test_long_sections_are_packed_under_the_limit_with_overlap() -> None:
    sentences = [f"Sentence number {i} explains one more detail of the policy." for i in range(60)]
    paragraphs = [" ".join(sentences[i : i + 5]) for i in range(0, 60, 5)]
    text = "# Policy\n\n" + "\n\n".join(paragraphs)
    chunks = chunk_document("policy.md", text)
    assert len(chunks) > 3
    assert all(len(c.text) <= MAX_CHUNK_CHARS for c in chunks)
    assert all(c.title == "Policy" for c in chunks)
    for before, after in itertools.pairwise(chunks):
        # The next chunk opens with the last sentence of the previous one.
        head = after.text.split("\n\n")[0]
        assert before.text.endswith(head), (before.text[-150:], head)
        assert 0 < len(head) <= OVERLAP_CHARS
    # Nothing is lost: every sentence is in some chunk.
    joined = "\n".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)


def test_a_paragraph_longer_than_a_chunk_is_cut_at_sentences_then_words() -> None:
    paragraph = " ".join(f"word{i}" for i in range(400))  # no sentence end at all
    chunks = chunk_document("notes.txt", paragraph + ". " + "x" * 2000)
    assert all(len(c.text) <= MAX_CHUNK_CHARS for c in chunks)
    assert "word0" in chunks[0].text and "word399" in "".join(c.text for c in chunks)
    assert sum(c.text.count("x") for c in chunks) >= 2000  # a huge "word" is sliced


def test_plain_text_is_chunked_by_paragraphs_under_the_title() -> None:
    text = "First paragraph.\r\n\r\nSecond paragraph.\n\n\n# not a heading in text\n"
    chunks = chunk_document("notes.txt", text, title="Notes")
    assert len(chunks) == 1
    assert chunks[0].title == "Notes"
    assert chunks[0].text == "First paragraph.\n\nSecond paragraph.\n\n# not a heading in text"
    assert not is_markdown("notes.txt") and is_markdown("Guide.MD")


def test_empty_and_heading_only_documents_have_no_chunks() -> None:
    assert chunk_document("a.md", "   \n\n") == []
    assert chunk_document("a.md", "# Title\n\n## Section\n") == []


@pytest.mark.parametrize("max_chars, overlap", [(50, 10), (800, 400), (800, -1)])
def test_bad_limits_are_refused(max_chars: int, overlap: int) -> None:
    with pytest.raises(ValueError, match=r"max_chars|overlap"):
        chunk_document("a.md", "text", max_chars=max_chars, overlap=overlap)


def test_the_sample_collection_chunks_one_section_per_passage() -> None:
    files = help_center_files()
    assert 10 <= len(files) <= 14
    for path in files:
        text = path.read_text(encoding="utf-8")
        words = len(text.split())
        assert 200 <= words <= 600, f"{path.name} has {words} words"
        chunks = chunk_document(path.name, text)
        title = markdown_title(text)
        assert title and all(c.title and c.title.startswith(title) for c in chunks)
        assert all(len(c.text) <= MAX_CHUNK_CHARS for c in chunks)
        headings = [line for line in text.splitlines() if line.startswith("## ")]
        assert len(chunks) == len(headings) + 1, path.name  # the intro, then one per section
