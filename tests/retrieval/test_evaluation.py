"""store.knowledge.evaluation: reading question files (errors name the file
and the item) and scoring answers (hit@1, hit@3, MRR, "nothing relevant")."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session

from store.knowledge.evaluation import (
    EvaluationFileError,
    Question,
    Report,
    evaluate,
    load_questions,
)
from tests.retrieval.conftest import COLLECTION, ingest_help_center, qa_pairs


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "questions.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_questions_name_their_documents_or_none(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "questions:\n"
        "  - {query: where is my refund, document: refunds.md, also: [returns.md], kind: typo}\n"
        "  - {query: do you sell bikes, document: none, kind: uncovered}\n",
    )
    covered, uncovered = load_questions(path, "questions")
    assert covered == Question("where is my refund", ("refunds.md", "returns.md"), "typo")
    assert uncovered.documents == () and not uncovered.covered


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("other: []\n", "no list of questions under 'questions'"),
        ("questions:\n  - {query: hi}\n", "questions item 1 needs a non-empty `query`"),
        ("questions:\n  - {query: ' ', document: a.md}\n", "item 1 needs a non-empty"),
        ("questions:\n  - {query: hi, document: a.md, also: b.md}\n", "`also` must be a list"),
        ("questions: [\n", "cannot read questions"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(EvaluationFileError, match="questions") as caught:
        load_questions(path, "questions")
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_report_fractions() -> None:
    report = Report("x", covered=4, uncovered=2, hit1=2, hit3=3, reciprocal_ranks=2.5)
    report.uncovered_nothing, report.covered_nothing = 1, 1
    assert (report.hit1_rate, report.hit3_rate, report.mrr) == (0.5, 0.75, 0.625)
    assert (report.nothing_when_uncovered, report.nothing_when_covered) == (0.5, 0.25)
    assert Report("empty").nothing_when_uncovered is None


def test_evaluate_scores_ranks_and_nothing_relevant(session: Session) -> None:
    ingest_help_center(session)
    pair = qa_pairs()[0]
    right = Question(pair.query, (pair.document,))
    # The right document among two: found first; a wrong one only: no hit.
    wrong = Question(pair.query, ("no-such-article.md",))
    uncovered = Question("can you recommend a recipe for campfire chili", ())
    report = evaluate(
        session, collection=COLLECTION, questions=[right, wrong, uncovered], label="t"
    )
    assert (report.covered, report.uncovered) == (2, 1)
    assert (report.hit1, report.hit3, report.mrr) == (1, 1, 0.5)
    assert report.uncovered_nothing == 1 and report.covered_nothing == 0
    assert any("no-such-article.md" in miss for miss in report.misses)
    # A threshold no passage reaches answers every question "nothing relevant".
    strict = evaluate(session, collection=COLLECTION, questions=[right], label="t", min_score=1.0)
    assert strict.covered_nothing == 1 and strict.hit1 == 0
