"""The EvalWorkflow's pure parts: the budget's admission rule and the facts a
finished child run leaves for scoring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workflows.evals.budget import EvalBudget
from workflows.evals.facts import child_run_id, gather_facts
from workflows.types import CascadeDecision, ChainResult, StepRecord, UsageSummary

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_without_a_budget_every_case_gets_the_chain_limit() -> None:
    budget = EvalBudget(None)
    assert budget.cap_for("a", 0.10) == 0.10
    assert budget.cap_for("a", None) is None
    budget.reserve("a/1", 0.10)
    assert budget.reserved_usd == 0.0  # nothing to reserve against


def test_a_case_is_capped_by_what_is_left_and_reserves_its_cap() -> None:
    budget = EvalBudget(0.25)
    assert budget.cap_for("a", 0.10) == 0.10
    budget.reserve("a/1", 0.10)
    budget.reserve("a/2", 0.10)
    # 0.05 left unreserved: the next case may spend at most that.
    assert budget.cap_for("a", 0.10) == pytest.approx(0.05)
    budget.settle("a/1", "a", 0.02)
    assert (budget.spent_usd, budget.reserved_usd) == (pytest.approx(0.02), pytest.approx(0.10))
    assert budget.cap_for("a", 0.10) == pytest.approx(0.10)


def test_a_case_that_cannot_be_covered_is_refused() -> None:
    budget = EvalBudget(0.05, spent_usd=0.04, observed_max_usd={"a": 0.02})
    # 0.01 left, but a case of `a` has cost 0.02: refused.
    assert budget.cap_for("a", 0.10) is False
    # A variant with no case yet gets what is left.
    assert budget.cap_for("b", 0.10) == pytest.approx(0.01)
    assert EvalBudget(0.05, spent_usd=0.05).cap_for("b", None) is False


def test_settling_remembers_the_most_a_case_of_each_variant_cost() -> None:
    budget = EvalBudget(1.0)
    for key, cost in (("a/1", 0.03), ("a/2", 0.01), ("b/1", 0.2)):
        budget.reserve(key, 0.5)
        budget.settle(key, key[0], cost)
    assert budget.observed_max_usd == {"a": 0.03, "b": 0.2}
    assert budget.reserved == {}


def step(name: str, kind: str, start_s: float, end_s: float, **fields: object) -> StepRecord:
    return StepRecord(
        name=name,
        kind=kind,
        status="completed",
        started_at=T0 + timedelta(seconds=start_s),
        finished_at=T0 + timedelta(seconds=end_s),
        **fields,  # type: ignore[arg-type]
    )


def test_facts_of_a_completed_run() -> None:
    result = ChainResult(
        chain="c",
        version=1,
        status="completed",
        output="Refund sent [refunds.md#2].",
        steps={
            "classify": step("classify", "model", 0, 0.5, output={"category": "refund"}),
            "answer": step(
                "answer",
                "model",
                0.5,
                2.0,
                cascade=CascadeDecision(
                    from_alias="cheap", to_alias="strong", escalated=True, reason="low confidence"
                ),
            ),
            "review": step("review", "approval", 2.0, 2.25),
            "second_look": step(
                "second_look", "approval", 2.25, 2.25, branch="not required (when did not hold)"
            ),
        },
        usage=UsageSummary(cost_usd=0.004),
    )

    facts = gather_facts(
        case_id="c1", variant="v", run_id="r", result=result, error_type=None, latency_s=9.0
    )

    assert facts.status == "completed"
    assert facts.answer_text == "Refund sent [refunds.md#2]."
    assert facts.latency_s == pytest.approx(2.25)  # first start to last end, not the parent's
    assert facts.approvals_requested == 1  # the skipped approval asked nobody
    assert facts.escalated is True
    assert facts.cost_usd == 0.004
    assert facts.output is not None
    assert facts.output["steps"]["classify"]["output"] == {"category": "refund"}


def test_facts_of_a_run_that_left_no_result() -> None:
    facts = gather_facts(
        case_id="c1", variant="v", run_id="r", result=None, error_type="TimeoutError",
        latency_s=3.0,
    )  # fmt: skip
    assert (facts.status, facts.error_type, facts.latency_s) == ("failed", "TimeoutError", 3.0)


def test_child_run_ids_are_one_per_evaluation_variant_and_case() -> None:
    ids = {child_run_id(e, v, c) for e in ("e1", "e2") for v in ("a", "b") for c in ("1", "2")}
    assert len(ids) == 8
    assert child_run_id("e1", "a", "1") == child_run_id("e1", "a", "1")


def test_a_chain_without_a_limit_gets_a_share_of_what_is_left() -> None:
    budget = EvalBudget(0.30)
    assert budget.cap_for("a", None, free_slots=3) == pytest.approx(0.10)
    assert budget.cap_for("a", None, free_slots=1) == pytest.approx(0.30)


def test_a_cap_below_the_chain_limit_is_tight() -> None:
    budget = EvalBudget(0.15)
    budget.reserve("a/1", 0.10)
    cap = budget.cap_for("a", 0.10)
    assert cap == pytest.approx(0.05)
    assert budget.tight(cap, 0.10)  # the workflow waits for a/1 rather than start with it
    assert not budget.tight(0.10, 0.10)
    assert not budget.tight(0.05, None)
