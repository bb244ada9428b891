"""A retrieve step's minimum score: the spec field, the activity applying the
step's threshold or the store's default, saying "nothing relevant" when no
passage passes, and runs scheduled before the field existed keeping every
passage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine

from activities.retrieval.activities import RetrievalActivities
from activities.retrieval.types import RetrieveInput, RetrieveResult
from core.chain_spec import RetrieveStep
from store.engine import make_engine, session_scope
from store.knowledge.search import DEFAULT_MIN_SCORE
from store.schema import create_all
from tests.activity_env import run_activity
from tests.retrieval.conftest import COLLECTION, ingest_help_center, qa_pairs

UNCOVERED = "can you recommend a good recipe for campfire chili"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('min_score') / 'chorus.db'}")
    create_all(engine)
    with session_scope(engine) as session:
        ingest_help_center(session)
    yield engine
    engine.dispose()


async def retrieve(engine: Engine, query: str, **values: object) -> RetrieveResult:
    req = RetrieveInput.model_validate(
        {"collection": COLLECTION, "query": query, "step": "research"} | values
    )
    return await run_activity(RetrievalActivities(engine).retrieve, req)


def test_step_min_score_is_optional_and_between_0_and_1() -> None:
    base = {"name": "research", "collection": "help_center", "query": "{{ input.q }}"}
    assert RetrieveStep.model_validate(base).min_score is None
    assert RetrieveStep.model_validate(base | {"min_score": 0.3}).min_score == 0.3
    for bad in (-0.1, 1.5, "high"):
        with pytest.raises(ValidationError, match="min_score"):
            RetrieveStep.model_validate(base | {"min_score": bad})


async def test_an_uncovered_question_gets_nothing_relevant_at_the_default(
    engine: Engine,
) -> None:
    result = await retrieve(engine, UNCOVERED, apply_min_score=True)
    assert result.min_score == DEFAULT_MIN_SCORE
    assert result.passages == [] and result.nothing_relevant is True


async def test_a_covered_question_passes_the_default(engine: Engine) -> None:
    pair = qa_pairs()[0]
    result = await retrieve(engine, pair.query, apply_min_score=True, top_k=3)
    assert result.nothing_relevant is False and result.min_score == DEFAULT_MIN_SCORE
    assert result.passages[0].document == pair.document
    assert all(DEFAULT_MIN_SCORE <= p.score <= 1 for p in result.passages)


async def test_the_steps_own_threshold_wins(engine: Engine) -> None:
    pair = qa_pairs()[0]
    everything = await retrieve(engine, pair.query, apply_min_score=True, min_score=0, top_k=10)
    assert everything.min_score == 0 and len(everything.passages) == 10
    cut = everything.passages[2].score + 1e-6
    strict = await retrieve(engine, pair.query, apply_min_score=True, min_score=cut, top_k=10)
    assert strict.min_score == cut
    assert [p.id for p in strict.passages] == [p.id for p in everything.passages[:2]]
    nothing = await retrieve(engine, pair.query, apply_min_score=True, min_score=1.0)
    assert nothing.passages == [] and nothing.nothing_relevant is True


async def test_runs_scheduled_before_min_score_keep_every_passage(engine: Engine) -> None:
    """An activity input without `apply_min_score` (what a run started before
    the patch sends) gets every passage that matches, as before."""
    result = await retrieve(engine, UNCOVERED, top_k=3)
    assert result.min_score is None and result.nothing_relevant is False
    assert result.passages and result.passages[0].score < DEFAULT_MIN_SCORE


def test_input_refuses_a_threshold_out_of_range() -> None:
    with pytest.raises(ValidationError, match="min_score"):
        RetrieveInput(collection=COLLECTION, query="refund", min_score=2)
