"""Scoring: each check kind passes and fails where it should, a run that did
not complete fails every check, and hostile answers (missing, non-string,
huge, NUL, lone surrogates, a catastrophic pattern) score without crashing."""

from __future__ import annotations

from typing import Any

import pytest

from activities.evals.scoring import answer_text_of, score_case
from core.evals.results import CaseRunFacts
from core.evals.spec import MAX_SCAN_CHARS, EvalCase


def case(*checks: dict[str, Any], labels: dict[str, str] | None = None) -> EvalCase:
    return EvalCase.model_validate(
        {
            "id": "c1",
            "input": {"message": "q"},
            "labels": labels or {"category": "refund"},
            "checks": list(checks),
        }
    )


def facts(answer: Any = "", **changes: Any) -> CaseRunFacts:
    values: dict[str, Any] = {
        "case_id": "c1",
        "variant": "v",
        "run_id": "r1",
        "status": "completed",
        "answer_text": answer,
        "cost_usd": 0.002,
        "latency_s": 1.5,
    }
    values.update(changes)
    if isinstance(values["answer_text"], str):
        return CaseRunFacts(**values)
    # The engine validates its facts; these tests also feed what it must never send.
    return CaseRunFacts.model_construct(**values)


def verdicts(the_case: EvalCase, the_facts: CaseRunFacts) -> list[bool]:
    """Each check's verdict, after the leading `completed` result."""
    score = score_case(the_case, the_facts)
    assert score.checks[0].kind == "completed"
    return [c.passed for c in score.checks[1:]]


REFUND_ANSWER = (
    "Refunds go back to your original payment method within 5\u201310 business days "
    "of the return arriving [refunds.md#1]. Shipping costs aren\u2019t refunded [returns.md#0]."
)


def test_contains_text_is_case_and_typography_insensitive() -> None:
    checks = (
        {"kind": "contains", "text": "5-10 business days"},
        {"kind": "contains", "text": "ORIGINAL PAYMENT METHOD"},
        {"kind": "contains", "text": "aren't refunded"},
        {"kind": "contains", "text": "30 days"},
        {"kind": "contains", "text": "Original payment", "ignore_case": False},
    )
    assert verdicts(case(*checks), facts(REFUND_ANSWER)) == [True, True, True, False, False]


def test_contains_pattern() -> None:
    checks = (
        {"kind": "contains", "pattern": r"5\s*-\s*10 (business )?days"},
        {"kind": "contains", "pattern": r"\b(30|thirty) days\b"},
    )
    score = score_case(case(*checks), facts(REFUND_ANSWER))
    assert [c.passed for c in score.checks[1:]] == [True, False]
    assert "does not say /\\b(30|thirty) days\\b/" in score.checks[2].detail
    assert not score.passed


def test_not_contains() -> None:
    checks = (
        {"kind": "not_contains", "text": "store credit", "note": "refunds are to the card"},
        {"kind": "not_contains", "pattern": r"original\s+payment"},
    )
    score = score_case(case(*checks), facts(REFUND_ANSWER))
    assert [c.passed for c in score.checks[1:]] == [True, False]
    assert score.checks[2].detail == "says /original\\s+payment/, which it must not"


def test_cites_reads_the_answer_and_the_runs_citations() -> None:
    checks = (
        {"kind": "cites", "documents": ["refunds.md", "returns.md"]},
        {"kind": "cites", "documents": ["Refunds.md"]},
        {"kind": "cites", "documents": ["shipping.md"]},
        {"kind": "cites", "documents": ["shipping.md", "returns.md"], "require": "any"},
        {"kind": "cites", "documents": ["shipping.md", "gift_cards.md"], "require": "any"},
        {"kind": "cites", "documents": ["warranty.md"]},
    )
    the_facts = facts(REFUND_ANSWER, cited=["warranty.md#3"])
    score = score_case(case(*checks), the_facts)
    assert [c.passed for c in score.checks[1:]] == [True, True, False, True, False, True]
    assert score.checks[3].detail == "does not cite shipping.md"
    assert score.checks[5].detail == "cites none of shipping.md, gift_cards.md"


def test_no_pii_counts_kinds_without_quoting_them() -> None:
    answer = "Write to jo.doe@example.com or call (555) 123-4567 about card 4111 1111 1111 1111."
    score = score_case(
        case({"kind": "no_pii"}, {"kind": "no_pii", "kinds": ["card"]}), facts(answer)
    )
    assert [c.passed for c in score.checks[1:]] == [False, False]
    detail = score.checks[1].detail
    assert "an email address" in detail and "a phone number" in detail
    assert "a payment card number" in detail
    assert "example.com" not in detail and "4111" not in detail
    clean = score_case(case({"kind": "no_pii"}), facts("Order LK-100234 ships in 2 days."))
    assert clean.passed


def test_no_pii_allows_the_businesss_own_contact_details() -> None:
    answer = "Call us on 1-800-555-0142 or write to help@larkspur.example."
    allowed = {"kind": "no_pii", "allow": ["1-800-555-0142", "help@larkspur.example"]}
    assert score_case(case(allowed), facts(answer)).passed
    leaked = answer + " We noted your number (303) 555-0147."
    score = score_case(case(allowed), facts(leaked))
    assert not score.passed and score.checks[1].detail == "holds a phone number"


def test_no_pii_allow_matches_a_contact_however_it_is_written() -> None:
    """The guard's rule (core/pii.py): a phone by its digits, an address
    case-insensitively."""
    allowed = {"kind": "no_pii", "allow": ["1-800-555-0142", "help@larkspur.example"]}
    answer = "Call 1 (800) 555\u20110142 or +1 800 555 0142, or write Help@Larkspur.example."
    assert score_case(case(allowed), facts(answer)).passed


def test_output_equals_reads_a_path_into_the_output() -> None:
    output = {
        "output": "reply",
        "steps": {
            "classify": {"output": {"category": " Refund ", "confidence": 0.9, "urgent": False}},
            "research": {"output": {"passages": [{"id": "refunds.md#1"}]}},
        },
    }
    checks = (
        {"kind": "output_equals", "path": "steps.classify.output.category", "value": "refund"},
        {"kind": "output_equals", "path": "steps.classify.output.category", "value": "return"},
        {"kind": "output_equals", "path": "steps.classify.output.confidence", "value": 0.9},
        {"kind": "output_equals", "path": "steps.classify.output.urgent", "value": False},
        {"kind": "output_equals", "path": "steps.classify.output.urgent", "value": 0},
        {
            "kind": "output_equals",
            "path": "steps.research.output.passages.0.id",
            "value": "refunds.md#1",
        },
        {"kind": "output_equals", "path": "steps.research.output.passages.5.id", "value": "x"},
        {"kind": "output_equals", "path": "steps.nowhere.output", "value": None},
    )
    score = score_case(case(*checks), facts("reply", output=output))
    assert [c.passed for c in score.checks[1:]] == [
        True,
        False,
        True,
        True,
        False,
        True,
        False,
        False,
    ]
    assert score.checks[2].detail == (
        "steps.classify.output.category is ' Refund ', expected 'return'"
    )
    assert score.checks[8].detail == "the run's output has no steps.nowhere.output"


def test_output_equals_with_no_output_fails_and_says_so() -> None:
    check = {"kind": "output_equals", "path": "steps.classify.output.category", "value": "refund"}
    score = score_case(case(check), facts("reply", output=None))
    assert not score.passed
    assert "has no steps.classify.output.category" in score.checks[1].detail


def test_a_run_that_did_not_complete_fails_every_check_with_its_error() -> None:
    checks = ({"kind": "no_pii"}, {"kind": "not_contains", "text": "anything"})
    the_facts = facts("", status="failed", error_type="BudgetExceeded", cost_usd=0.01)
    score = score_case(case(*checks), the_facts)
    assert not score.passed
    assert [c.passed for c in score.checks] == [False, False, False]
    assert all("BudgetExceeded" in c.detail for c in score.checks)
    assert score.error_type == "BudgetExceeded"
    assert score.cost_usd == 0.01


def test_a_case_passes_only_when_every_check_passes() -> None:
    the_case = case({"kind": "contains", "text": "refund"}, labels={"category": "refund", "x": "y"})
    score = score_case(the_case, facts(REFUND_ANSWER, approvals_requested=1, escalated=True))
    assert score.passed
    assert (score.case_id, score.variant, score.run_id) == ("c1", "v", "r1")
    assert score.labels == {"category": "refund", "x": "y"}
    assert (score.cost_usd, score.latency_s) == (0.002, 1.5)
    assert score.approvals_requested == 1 and score.escalated


def test_the_answer_falls_back_to_the_runs_output() -> None:
    the_case = case({"kind": "contains", "text": "within 30 days"})
    assert score_case(the_case, facts("", output={"output": "Return within 30 days."})).passed
    structured = facts("", output={"output": {"answer": "within 30 days", "confidence": 0.8}})
    assert score_case(the_case, structured).passed


@pytest.mark.parametrize(
    "answer",
    [None, 42, ["a", "list"], {"a": "dict"}, b"bytes"],
    ids=["none", "int", "list", "dict", "bytes"],
)
def test_a_non_string_answer_scores_as_empty_text(answer: Any) -> None:
    the_case = case({"kind": "contains", "text": "refund"}, {"kind": "no_pii"})
    score = score_case(the_case, facts(answer))
    assert [c.passed for c in score.checks] == [True, False, True]
    assert answer_text_of(facts(answer)) == ""


def test_nul_and_lone_surrogates_are_text_like_any_other() -> None:
    answer = "Refund\x00 within \ud800 30 days [refunds.md#1]\udfff"
    the_case = case(
        {"kind": "contains", "text": "30 days"},
        {"kind": "contains", "pattern": r"refund\x00"},
        {"kind": "cites", "documents": ["refunds.md"]},
        {"kind": "no_pii"},
    )
    score = score_case(the_case, facts(answer))
    assert score.passed
    score.model_dump_json()  # and the score itself still serialises


def test_a_huge_answer_is_read_up_to_the_scan_limit() -> None:
    answer = "x" * MAX_SCAN_CHARS + " the fact at the end"
    the_case = case({"kind": "not_contains", "text": "the fact"})
    assert score_case(the_case, facts(answer)).passed
    assert len(answer_text_of(facts(answer))) == MAX_SCAN_CHARS


def test_a_catastrophic_pattern_fails_its_check_instead_of_hanging() -> None:
    the_case = case(
        {"kind": "contains", "pattern": r"(x+x+)+y"},
        {"kind": "not_contains", "pattern": r"(x+x+)+y"},
    )
    # Without the timeout this backtracks for longer than the test's timeout.
    score = score_case(the_case, facts("x" * 5_000))
    assert [c.passed for c in score.checks[1:]] == [False, False]
    assert all("ran past" in c.detail for c in score.checks[1:])


@pytest.mark.parametrize(
    ("cost", "expected"),
    [(float("nan"), 0.0), (float("inf"), 0.0), (-1.0, 0.0), (0.5, 0.5)],
    ids=["nan", "inf", "negative", "ok"],
)
def test_costs_that_are_not_amounts_count_as_zero(cost: float, expected: float) -> None:
    assert score_case(case(), facts("a", cost_usd=cost)).cost_usd == expected
