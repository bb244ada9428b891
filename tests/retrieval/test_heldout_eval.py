"""The held-out evaluation (tests/retrieval/heldout_questions.yaml: 38 covered
questions written as customers write them, 10 the Help Center does not
cover; never used to tune anything) on SQLite and PostgreSQL, full-text and
hybrid with the local embedding model, at the store's default minimum score.

The floors are the figures measured when the file was written (the README
states them), not targets: a change that loses a held-out question fails
here and must say why. Where the issue's targets are not met (uncovered
questions answered "nothing relevant": target 90%), the floor is what was
measured and the gap is reported, not hidden.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session

from activities.retrieval.local_embeddings import MIN_SIMILARITY, load_local_model
from store.knowledge.crud import ensure_collection
from store.knowledge.evaluation import Report, embed_collection, evaluate, load_questions
from tests.retrieval.conftest import COLLECTION, ingest_help_center

HELD_OUT = Path(__file__).with_name("heldout_questions.yaml")
LOCAL_MODEL = "wordllama-l2-supercat-256"

FLOORS: dict[str, dict[str, float]] = {
    # Measured on both backends (identical: scoring runs in Python on the
    # database's candidates) with scores over the 6 most informative terms,
    # order numbers and unknown names left out, DEFAULT_MIN_SCORE 0.14:
    # hit@1 32/38, hit@3 35/38, MRR 0.887, uncovered answered nothing 2/10,
    # covered answered nothing 1/38 (before: 30/38, 32/38, 0.817, 2/10, 4/38).
    "full-text": {
        "hit1": 32 / 38,
        "hit3": 35 / 38,
        "mrr": 0.887,
        "nothing_when_uncovered": 2 / 10,
        "nothing_when_covered_max": 1 / 38,
    },
    # hit@1 36/38, hit@3 37/38, MRR 0.961, uncovered nothing 5/10, covered nothing 0/38
    # with the local model's MIN_SIMILARITY (0.26, chosen on the tuning sets):
    # uncovered answered nothing 2/10 -> 5/10, every other figure unchanged.
    "hybrid": {
        "hit1": 36 / 38,
        "hit3": 37 / 38,
        "mrr": 0.961,
        "nothing_when_uncovered": 5 / 10,
        "nothing_when_covered_max": 0 / 38,
    },
}


def run(session: Session, mode: str) -> Report:
    ingest_help_center(session)
    embed = None
    if mode == "hybrid":
        embed = load_local_model(LOCAL_MODEL).embed
        ensure_collection(session, name=COLLECTION, embedding_alias="embed_local")
        embed_collection(session, collection=COLLECTION, embed=embed)
    backend = session.get_bind().dialect.name
    return evaluate(
        session,
        collection=COLLECTION,
        questions=load_questions(HELD_OUT, "questions"),
        label=f"{backend} {mode} held-out",
        embed=embed,
        min_similarity=MIN_SIMILARITY[LOCAL_MODEL] if embed else None,
    )


def test_the_held_out_set_is_what_the_readme_says() -> None:
    questions = load_questions(HELD_OUT, "questions")
    assert len(questions) >= 30
    assert sum(not q.covered for q in questions) >= 8
    kinds = {q.kind for q in questions}
    assert {"paraphrase", "typo", "number", "two_topics", "uncovered"} <= kinds


@pytest.mark.parametrize("mode", ["full-text", "hybrid"])
def test_held_out_figures_hold_their_floors(
    session: Session, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run(session, mode)
    with capsys.disabled():
        print(f"\n{report.line()}\n" + "\n".join(report.misses))
    floor = FLOORS[mode]
    eps = 1e-3
    assert report.covered == 38 and report.uncovered == 10
    assert report.hit1_rate >= floor["hit1"] - eps, report.line()
    assert report.hit3_rate >= floor["hit3"] - eps, report.line()
    assert report.mrr >= floor["mrr"] - eps, report.line()
    assert report.nothing_when_uncovered is not None
    assert report.nothing_when_uncovered >= floor["nothing_when_uncovered"] - eps, report.line()
    assert report.nothing_when_covered <= floor["nothing_when_covered_max"] + eps, report.line()


def test_hybrid_is_not_worse_than_full_text_on_the_held_out_set(session: Session) -> None:
    full_text = run(session, "full-text")
    session.rollback()
    hybrid = run(session, "hybrid")
    assert hybrid.hit1 >= full_text.hit1, f"{hybrid.line()}\n{full_text.line()}"
    assert hybrid.hit3 >= full_text.hit3, f"{hybrid.line()}\n{full_text.line()}"
    assert hybrid.mrr >= full_text.mrr - 1e-9, f"{hybrid.line()}\n{full_text.line()}"
