"""The statistics of a comparison: pass-rate intervals, latency percentiles,
per-variant summaries and the recommendation. Pure functions of the scores.

The interval is Wilson's score interval, not the normal approximation: with
60 cases and pass rates near 90-100% the normal interval runs past 100% and
collapses to zero width at 60/60, while Wilson's stays inside [0, 1] and
keeps an honest width (60/60 is 94.0-100%, not "exactly 100%").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

from core.evals.results import CaseScore, CategorySummary, VariantSummary

__all__ = [
    "UNLABELLED",
    "PairedComparison",
    "paired_comparison",
    "percentile",
    "recommend",
    "recommendation_rule",
    "summarise",
    "wilson_interval",
]

UNLABELLED = "(unlabelled)"
"""The category of cases without the category label."""


def wilson_interval(passed: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a pass rate `passed / total` at `confidence`.

    (0.0, 1.0) when there are no cases: nothing is known. Raises ValueError
    for counts that cannot be a pass rate or a confidence outside (0, 1).
    """
    if total < 0 or passed < 0 or passed > total:
        raise ValueError(f"passed={passed}, total={total}: need 0 <= passed <= total")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence} must be between 0 and 1")
    if total == 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = passed / total
    z2n = z * z / total
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / total + z2n / (4.0 * total)) / (1.0 + z2n)
    low = 0.0 if passed == 0 else max(0.0, centre - half)
    high = 1.0 if passed == total else min(1.0, centre + half)
    return (low, high)


def percentile(values: Iterable[float], q: float) -> float:
    """The `q`-th percentile (0-100) by linear interpolation between the
    closest ranks (numpy's default method); 0.0 for no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} must be between 0 and 100")
    ordered = sorted(float(v) for v in values)
    if not ordered:
        return 0.0
    rank = (len(ordered) - 1) * q / 100.0
    below = math.floor(rank)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)


def summarise(
    scores: Sequence[CaseScore], *, category_label: str = "category"
) -> list[VariantSummary]:
    """One summary per variant, in the order variants first appear.

    Every scored case counts, a failed run included: its cost was spent and
    its customer got no good answer. Cases without `category_label` fall in
    the `(unlabelled)` category.
    """
    by_variant: dict[str, list[CaseScore]] = {}
    for score in scores:
        by_variant.setdefault(score.variant, []).append(score)
    return [_summary(variant, group, category_label) for variant, group in by_variant.items()]


def _summary(variant: str, group: list[CaseScore], category_label: str) -> VariantSummary:
    cases = len(group)
    passed = sum(1 for s in group if s.passed)
    low, high = wilson_interval(passed, cases)
    cost = math.fsum(s.cost_usd for s in group)
    latencies = [s.latency_s for s in group]
    categories: dict[str, list[CaseScore]] = {}
    for s in group:
        categories.setdefault(s.labels.get(category_label, UNLABELLED), []).append(s)
    return VariantSummary(
        variant=variant,
        cases=cases,
        passed=passed,
        pass_rate=passed / cases,
        ci_low=low,
        ci_high=high,
        cost_usd=cost,
        cost_per_case_usd=cost / cases,
        p50_latency_s=percentile(latencies, 50),
        p95_latency_s=percentile(latencies, 95),
        approval_rate=sum(1 for s in group if s.approvals_requested > 0) / cases,
        escalation_rate=sum(1 for s in group if s.escalated) / cases,
        judge_cost_usd=math.fsum(s.judge_cost_usd for s in group),
        by_category={
            name: CategorySummary(
                category=name,
                cases=len(members),
                passed=sum(1 for s in members if s.passed),
                pass_rate=sum(1 for s in members if s.passed) / len(members),
                cost_usd=math.fsum(s.cost_usd for s in members),
            )
            for name, members in sorted(categories.items())
        },
    )


def recommend(summaries: Sequence[VariantSummary], *, within_points: float = 5.0) -> str | None:
    """The cheapest variant (by cost per case) whose pass rate is within
    `within_points` percentage points of the best pass rate; ties go to the
    higher pass rate, then to the name. None when there is nothing scored.
    """
    if within_points < 0 or not math.isfinite(within_points):
        raise ValueError(f"within_points {within_points} must be a finite number >= 0")
    scored = [s for s in summaries if s.cases > 0]
    if not scored:
        return None
    best = max(s.pass_rate for s in scored)
    # Compared in points, rounded, so 0.95 - 0.90 counts as 5 points, not 5.000000000000004.
    eligible = [s for s in scored if round((best - s.pass_rate) * 100.0, 9) <= within_points]
    return min(eligible, key=lambda s: (s.cost_per_case_usd, -s.pass_rate, s.variant)).variant


def recommendation_rule(within_points: float = 5.0) -> str:
    """The rule `recommend` applies, in words, for the report."""
    return (
        f"the cheapest variant per case whose pass rate is within {within_points:g} "
        "percentage points of the best pass rate"
    )


@dataclass(frozen=True)
class PairedComparison:
    """Two variants on the cases both were scored on: how many only the first
    passed, how many only the second, and the exact two-sided McNemar p-value
    (a small p says the difference is unlikely to be chance)."""

    first: str
    second: str
    shared_cases: int
    only_first: int
    only_second: int
    p_value: float


def paired_comparison(scores: Sequence[CaseScore], first: str, second: str) -> PairedComparison:
    """Compare two variants case by case. Every variant runs the same cases,
    so the discordant pairs carry the evidence; McNemar's exact test asks how
    likely so lopsided a split is if the variants were equally good."""
    passed: dict[str, dict[str, bool]] = {first: {}, second: {}}
    for score in scores:
        if score.variant in passed:
            passed[score.variant][score.case_id] = score.passed
    shared = passed[first].keys() & passed[second].keys()
    only_first = sum(1 for c in shared if passed[first][c] and not passed[second][c])
    only_second = sum(1 for c in shared if passed[second][c] and not passed[first][c])
    return PairedComparison(
        first=first,
        second=second,
        shared_cases=len(shared),
        only_first=only_first,
        only_second=only_second,
        p_value=_mcnemar_exact(only_first, only_second),
    )


def _mcnemar_exact(b: int, c: int) -> float:
    n = b + c
    if n == 0:
        return 1.0
    tail = math.fsum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)
