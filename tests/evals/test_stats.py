"""The statistics of a comparison: Wilson intervals against published values,
percentiles, per-variant summaries and the recommendation rule."""

from __future__ import annotations

import pytest

from core.evals.results import CaseScore, VariantSummary
from core.evals.stats import (
    UNLABELLED,
    paired_comparison,
    percentile,
    recommend,
    recommendation_rule,
    summarise,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("passed", "total", "low", "high"),
    [
        # Newcombe (1998), Statistics in Medicine 17:857, table I, method 3.
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        # 60 of 60 is not "exactly 100%".
        (60, 60, 0.9398, 1.0),
    ],
    ids=["81-263", "15-148", "0-20", "1-29", "60-60"],
)
def test_wilson_interval_matches_published_values(
    passed: int, total: int, low: float, high: float
) -> None:
    got_low, got_high = wilson_interval(passed, total)
    assert got_low == pytest.approx(low, abs=5e-5)
    assert got_high == pytest.approx(high, abs=5e-5)


def test_wilson_interval_narrows_with_more_cases_and_widens_with_confidence() -> None:
    small = wilson_interval(45, 60)
    large = wilson_interval(450, 600)
    assert small[0] < large[0] < 0.75 < large[1] < small[1]
    wide = wilson_interval(45, 60, confidence=0.99)
    assert wide[0] < small[0] and wide[1] > small[1]
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("passed", "total", "confidence"),
    [(5, 4, 0.95), (-1, 4, 0.95), (1, 4, 1.0), (1, 4, 0.0)],
    ids=["more-passed", "negative", "confidence-1", "confidence-0"],
)
def test_wilson_interval_refuses_what_is_not_a_pass_rate(
    passed: int, total: int, confidence: float
) -> None:
    with pytest.raises(ValueError):
        wilson_interval(passed, total, confidence)


def test_percentile_interpolates_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0, 10.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 10.0
    # numpy.percentile([1, 2, 3, 4, 10], 95) == 8.8
    assert percentile(values, 95) == pytest.approx(8.8)
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) == 0.0
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile(values, 101)


def score(variant: str, case: str, passed: bool, **extra: object) -> CaseScore:
    values: dict[str, object] = {
        "case_id": case,
        "variant": variant,
        "run_id": f"{variant}-{case}",
        "passed": passed,
        "checks": [],
        "cost_usd": 0.01,
        "latency_s": 1.0,
        "labels": {"category": "refund"},
    }
    values.update(extra)
    return CaseScore.model_validate(values)


def test_summarise_counts_every_case_per_variant_and_category() -> None:
    scores = [
        score("routed", "a", True, cost_usd=0.001, latency_s=1.0, approvals_requested=1),
        score("routed", "b", False, cost_usd=0.003, latency_s=3.0, escalated=True),
        score("routed", "c", True, cost_usd=0.002, latency_s=2.0, labels={"category": "order"}),
        score("routed", "d", False, error_type="BudgetExceeded", labels={}),
        score("strong", "a", True, cost_usd=0.02, judge_cost_usd=0.001),
    ]
    routed, strong = summarise(scores)
    assert (routed.variant, strong.variant) == ("routed", "strong")
    assert (routed.cases, routed.passed, routed.pass_rate) == (4, 2, 0.5)
    assert (routed.ci_low, routed.ci_high) == wilson_interval(2, 4)
    assert routed.cost_usd == pytest.approx(0.016)
    assert routed.cost_per_case_usd == pytest.approx(0.004)
    assert routed.p50_latency_s == pytest.approx(1.5)
    assert routed.p95_latency_s == pytest.approx(2.85)
    assert (routed.approval_rate, routed.escalation_rate) == (0.25, 0.25)
    assert sorted(routed.by_category) == [UNLABELLED, "order", "refund"]
    refund = routed.by_category["refund"]
    assert (refund.cases, refund.passed, refund.pass_rate) == (2, 1, 0.5)
    assert refund.cost_usd == pytest.approx(0.004)
    assert strong.judge_cost_usd == pytest.approx(0.001)
    assert strong.cost_usd == pytest.approx(0.02)  # the judge's cost is apart


def test_summarise_uses_the_category_label_it_is_given() -> None:
    scores = [score("v", "a", True, labels={"category": "refund", "complexity": "complex"})]
    (summary,) = summarise(scores, category_label="complexity")
    assert list(summary.by_category) == ["complex"]


def summary(
    variant: str, pass_rate: float, cost_per_case: float, cases: int = 100
) -> VariantSummary:
    return VariantSummary(
        variant=variant,
        cases=cases,
        passed=round(pass_rate * cases),
        pass_rate=pass_rate,
        ci_low=0.0,
        ci_high=1.0,
        cost_usd=cost_per_case * cases,
        cost_per_case_usd=cost_per_case,
        p50_latency_s=1.0,
        p95_latency_s=2.0,
        approval_rate=0.0,
        escalation_rate=0.0,
    )


def test_recommend_the_cheapest_variant_within_the_margin_of_the_best() -> None:
    strong = summary("strong", 0.95, 0.020)
    routed = summary("routed", 0.90, 0.007)
    cheap = summary("cheap", 0.70, 0.001)
    assert recommend([strong, routed, cheap]) == "routed"  # exactly 5 points counts
    assert recommend([strong, routed, cheap], within_points=4.9) == "strong"
    assert recommend([strong, routed, cheap], within_points=25) == "cheap"
    assert recommend([strong, routed, cheap], within_points=0) == "strong"


def test_recommend_breaks_ties_by_pass_rate_then_name() -> None:
    same_cost = [summary("b", 0.90, 0.01), summary("a", 0.92, 0.01), summary("c", 0.92, 0.01)]
    assert recommend(same_cost) == "a"
    assert recommend([summary("z", 0.9, 0.01), summary("y", 0.9, 0.01)]) == "y"


def test_recommend_needs_something_scored() -> None:
    assert recommend([]) is None
    assert recommend([summary("empty", 0.0, 0.0, cases=0)]) is None
    with pytest.raises(ValueError, match="within_points"):
        recommend([summary("a", 0.9, 0.01)], within_points=-1)


def test_the_rule_is_stated_in_words() -> None:
    assert "within 5 percentage points" in recommendation_rule(5.0)
    assert "within 2.5 percentage points" in recommendation_rule(2.5)


def test_paired_comparison_counts_discordant_cases_and_tests_them() -> None:
    scores = [score("a", f"c{i}", True) for i in range(12)]
    scores += [score("b", f"c{i}", i < 2) for i in range(12)]
    scores += [score("b", "only-b", True)]  # not shared: not compared
    paired = paired_comparison(scores, "a", "b")
    assert (paired.shared_cases, paired.only_first, paired.only_second) == (12, 10, 0)
    # Exact McNemar: 2 * 0.5**10
    assert paired.p_value == pytest.approx(2 / 1024)
    even = paired_comparison(
        [
            score("a", "x", True),
            score("b", "x", False),
            score("a", "y", False),
            score("b", "y", True),
        ],
        "a",
        "b",
    )
    assert (even.only_first, even.only_second, even.p_value) == (1, 1, 1.0)
    assert paired_comparison([], "a", "b").p_value == 1.0
