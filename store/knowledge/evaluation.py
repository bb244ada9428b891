"""Retrieval quality on labelled questions: hit@1, hit@3, MRR and "nothing relevant".

One question names the documents that answer it (any of them is a hit) or
none at all (the Help Center does not cover it, and the right answer is
"nothing relevant": no passage passes the minimum score). The same code
scores the in-sample set (tests/retrieval/qa_pairs.yaml, which tuning may
look at) and the held-out set (tests/retrieval/heldout_questions.yaml, which
it may not), for full-text and hybrid ranking on either backend, so the
benchmark (bench/retrieval_eval.py) and the tests that assert floors cannot
disagree about what a figure means.

Embeddings come in as a plain function (texts → vectors), so this module
needs no provider: the caller passes the simulator's hashing, a local model
or anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import Session

from core.passages import Passage
from store.knowledge.crud import ensure_collection, ingest_document
from store.knowledge.embeddings import chunks_missing_embeddings, store_embeddings
from store.knowledge.errors import EmptyQueryError
from store.knowledge.search import DEFAULT_MIN_SCORE, search

EmbedTexts = Callable[[list[str]], list[list[float]]]
"""`embed(texts)` → one vector per text, in order."""

RANKED = 10
"""Passages asked for per question: MRR counts the first hit within them."""
NONE = "none"
"""The `document` of a question the collection does not cover."""


class EvaluationFileError(ValueError):
    """A question file is unreadable or a question is malformed; the message
    names the file and the question."""


@dataclass(frozen=True)
class Question:
    query: str
    documents: tuple[str, ...]
    """Documents that answer it (a hit is any of them); empty when uncovered."""
    kind: str = ""

    @property
    def covered(self) -> bool:
        return bool(self.documents)


def load_questions(path: Path, section: str) -> list[Question]:
    """The questions of one section of a YAML file: items with `query`,
    `document` (a file name or `none`), optional `also` (more documents that
    answer it) and `kind`. Both tests/retrieval files have this shape."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise EvaluationFileError(f"cannot read questions from {path}: {exc}") from exc
    items = data.get(section) if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise EvaluationFileError(f"{path}: no list of questions under {section!r}")
    questions = []
    for number, item in enumerate(items, start=1):
        query, document = (
            (item.get("query"), item.get("document")) if isinstance(item, dict) else (None, None)
        )
        if not isinstance(query, str) or not query.strip() or not isinstance(document, str):
            raise EvaluationFileError(
                f"{path}: {section} item {number} needs a non-empty `query` and a `document`"
            )
        also = item.get("also") or []
        if not isinstance(also, list) or not all(isinstance(a, str) for a in also):
            raise EvaluationFileError(
                f"{path}: {section} item {number}: `also` must be a list of names"
            )
        documents = () if document == NONE else (document, *also)
        questions.append(
            Question(query=query, documents=tuple(documents), kind=str(item.get("kind", "")))
        )
    return questions


@dataclass
class Report:
    """Figures of one question set under one ranking; fractions are 0..1."""

    label: str
    covered: int = 0
    uncovered: int = 0
    hit1: int = 0
    hit3: int = 0
    reciprocal_ranks: float = 0.0
    uncovered_nothing: int = 0
    """Uncovered questions answered "nothing relevant" (right)."""
    covered_nothing: int = 0
    """Covered questions answered "nothing relevant" (wrong)."""
    misses: list[str] = field(default_factory=list)

    @property
    def hit1_rate(self) -> float:
        return self.hit1 / self.covered if self.covered else 0.0

    @property
    def hit3_rate(self) -> float:
        return self.hit3 / self.covered if self.covered else 0.0

    @property
    def mrr(self) -> float:
        return self.reciprocal_ranks / self.covered if self.covered else 0.0

    @property
    def nothing_when_uncovered(self) -> float | None:
        return self.uncovered_nothing / self.uncovered if self.uncovered else None

    @property
    def nothing_when_covered(self) -> float:
        return self.covered_nothing / self.covered if self.covered else 0.0

    def figures(self) -> dict[str, Any]:
        uncovered = self.nothing_when_uncovered
        return {
            "covered": self.covered,
            "uncovered": self.uncovered,
            "hit1": round(self.hit1_rate, 4),
            "hit3": round(self.hit3_rate, 4),
            "mrr": round(self.mrr, 4),
            "nothing_when_uncovered": None if uncovered is None else round(uncovered, 4),
            "nothing_when_covered": round(self.nothing_when_covered, 4),
        }

    def line(self) -> str:
        uncovered = self.nothing_when_uncovered
        none_part = (
            f", nothing-relevant on uncovered {self.uncovered_nothing}/{self.uncovered}"
            if uncovered is not None
            else ""
        )
        return (
            f"{self.label}: hit@1 {self.hit1}/{self.covered} ({self.hit1_rate:.1%}), "
            f"hit@3 {self.hit3}/{self.covered} ({self.hit3_rate:.1%}), MRR {self.mrr:.3f}"
            f"{none_part}, nothing-relevant on covered {self.covered_nothing}/{self.covered}"
        )


def ingest_folder(session: Session, *, collection: str, folder: Path, root: Path) -> int:
    """Ingest every Markdown file of `folder` into `collection` (created if
    needed), named by file name and sourced relative to `root`; returns how
    many files were read."""
    ensure_collection(session, name=collection)
    paths = sorted(folder.glob("*.md"))
    for path in paths:
        ingest_document(
            session,
            collection=collection,
            name=path.name,
            source=str(path.relative_to(root)),
            text=path.read_text(encoding="utf-8"),
        )
    return len(paths)


def embed_collection(
    session: Session, *, collection: str, embed: EmbedTexts, batch: int = 64
) -> int:
    """Give every chunk of the collection that has none an embedding (as the
    retrieve activity does on first use); returns how many were stored."""
    stored = 0
    while missing := chunks_missing_embeddings(session, collection=collection, limit=batch):
        vectors = embed([text for _, text in missing])
        stored += store_embeddings(
            session,
            embeddings={chunk_id: v for (chunk_id, _), v in zip(missing, vectors, strict=True)},
        )
    return stored


def evaluate(
    session: Session,
    *,
    collection: str,
    questions: Sequence[Question],
    label: str,
    embed: EmbedTexts | None = None,
    min_score: float = DEFAULT_MIN_SCORE,
    min_similarity: float | None = None,
) -> Report:
    """Ask every question (hybrid when `embed` is given: the collection's
    chunks must have embeddings from the same function, see
    `embed_collection`) and score the answers. A question whose passages
    all score below `min_score` (the store's default threshold, as a
    retrieve step applies it) is answered "nothing relevant", as is, in
    hybrid mode, one no chunk reaches `min_similarity` for (the embedding
    model's threshold, see `store.knowledge.search.search`)."""
    report = Report(label)
    query_vectors = embed([q.query for q in questions]) if embed else [None] * len(questions)
    for question, vector in zip(questions, query_vectors, strict=True):
        passages = _ask(session, collection, question.query, vector, min_score, min_similarity)
        documents = [p.document for p in passages]
        if not question.covered:
            report.uncovered += 1
            report.uncovered_nothing += not passages
            if passages:
                report.misses.append(f"  uncovered {question.query!r}: got {passages[0].id}")
            continue
        report.covered += 1
        report.covered_nothing += not passages
        rank = next((i for i, d in enumerate(documents, start=1) if d in question.documents), None)
        report.hit1 += rank == 1
        report.hit3 += rank is not None and rank <= 3
        report.reciprocal_ranks += 1.0 / rank if rank else 0.0
        if rank != 1:
            got = [p.id for p in passages[:3]] or "nothing relevant"
            report.misses.append(
                f"  {question.query!r}: expected {question.documents[0]}, got {got}"
            )
    return report


def _ask(
    session: Session,
    collection: str,
    query: str,
    vector: list[float] | None,
    min_score: float,
    min_similarity: float | None,
) -> list[Passage]:
    try:
        return search(
            session,
            collection=collection,
            query=query,
            top_k=RANKED,
            query_embedding=vector,
            min_score=min_score,
            min_similarity=min_similarity,
        )
    except EmptyQueryError:  # no word at all: nothing can be relevant
        return []
