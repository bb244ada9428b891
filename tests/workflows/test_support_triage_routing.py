"""The flagship chain's routing on "nothing relevant": its conditions and
context templates over realistic run contexts (the full run is in
tests/integration/test_support_triage_nothing_relevant.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.chain_spec import ApprovalStep, RetrieveStep, RouteStep
from workflows.templating import evaluate_bool, render
from workflows.validate import iter_steps, parse_chain_yaml

CHAIN = Path(__file__).resolve().parents[2] / "chains" / "support_triage.yaml"


def steps() -> dict[str, Any]:
    spec = parse_chain_yaml(CHAIN.read_text())
    return {step.name: step for _, step in iter_steps(spec.steps)}


def context(category: str, confidence: float, research: dict[str, Any] | None) -> dict[str, Any]:
    ran: dict[str, Any] = {"classify": {"output": {"category": category, "confidence": confidence}}}
    if research is not None:
        ran["research"] = {"output": research}
    return {"input": {"message": "hi"}, "steps": ran}


NOTHING = {"passages": [], "nothing_relevant": True, "min_score": 0.15}
FOUND = {"passages": [{"id": "returns.md#1"}], "nothing_relevant": False, "min_score": 0.15}


def test_research_uses_the_default_threshold_and_brand_takes_every_passage() -> None:
    found = steps()
    assert isinstance(found["research"], RetrieveStep) and found["research"].min_score is None
    assert isinstance(found["brand"], RetrieveStep) and found["brand"].min_score == 0


@pytest.mark.parametrize(
    ("research", "branch"), [(NOTHING, "let_me_check"), (FOUND, "grounded_answer")]
)
def test_nothing_relevant_routes_to_let_me_check(research: dict[str, Any], branch: str) -> None:
    grounded = steps()["grounded"]
    assert isinstance(grounded, RouteStep)
    ctx = context("other", 0.93, research)
    chosen = next(
        (b.steps for b in grounded.branches if evaluate_bool(b.when, ctx)), grounded.otherwise
    )
    assert chosen is not None and chosen[0].name == branch


@pytest.mark.parametrize(
    ("category", "confidence", "research", "needs_person", "help_center"),
    [
        ("other", 0.93, NOTHING, True, "nothing relevant found"),
        ("return", 0.93, FOUND, False, "answered from it"),
        ("shipping", 0.93, None, False, "not consulted"),
        ("refund", 0.93, FOUND, True, "answered from it"),
        ("order", 0.5, None, True, "not consulted"),
    ],
)
def test_review_asks_a_person_when_nothing_relevant_was_found(
    category: str,
    confidence: float,
    research: dict[str, Any] | None,
    needs_person: bool,
    help_center: str,
) -> None:
    review = steps()["review"]
    assert isinstance(review, ApprovalStep) and review.when is not None
    ctx = context(category, confidence, research)
    assert evaluate_bool(review.when, ctx) is needs_person
    assert render(review.context["help_center"], ctx) == help_center
