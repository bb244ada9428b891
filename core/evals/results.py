"""What an evaluation produces: the facts of one case's run, its score, and
the per-variant summaries and recommendation of the report.

These cross the Temporal boundary (activity inputs and results, the eval
workflow's result) and are stored in the application database, so they are
frozen pydantic models with plain JSON-able fields: add optional fields,
never rename or remove one.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CaseRunFacts",
    "CaseScore",
    "CategorySummary",
    "CheckResult",
    "EvalReport",
    "VariantSummary",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckResult(_Frozen):
    """One check on one answer: passed or not, and in words why."""

    kind: str
    passed: bool
    detail: str


class CaseRunFacts(_Frozen):
    """What the engine gathers from one finished child run of one variant on
    one case; the scoring activity needs nothing else.

    `answer_text` is the text a customer would read (the chain's final
    output rendered as text); `cited` the document names or citation ids the
    run cited (`refunds.md` or `refunds.md#2`); `output` the run's result
    (`{"output": ..., "steps": {...}}`) that `output_equals` paths read.
    """

    case_id: str
    variant: str
    run_id: str
    status: str
    output: dict[str, Any] | None = None
    answer_text: str = ""
    cited: list[str] = Field(default_factory=list)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    approvals_requested: int = 0
    escalated: bool = False
    error_type: str | None = None


class CaseScore(_Frozen):
    """One case on one variant, scored: passed only when the run completed
    and every check passed."""

    case_id: str
    variant: str
    run_id: str
    passed: bool
    checks: list[CheckResult]
    cost_usd: float
    latency_s: float
    approvals_requested: int = 0
    escalated: bool = False
    judge_score: float | None = None
    """The judge model's score from 0 to 1, when a judge was asked."""
    judge_cost_usd: float = 0.0
    """What the judge cost; never part of `cost_usd` (the variant's own cost)."""
    error_type: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class CategorySummary(_Frozen):
    """One variant on the cases of one category."""

    category: str
    cases: int
    passed: int
    pass_rate: float
    cost_usd: float


class VariantSummary(_Frozen):
    """One variant over every scored case: pass rate with its 95% Wilson
    interval, cost, latency percentiles, how often a person was asked and how
    often a cascade escalated, and the same per category."""

    variant: str
    cases: int
    passed: int
    pass_rate: float
    ci_low: float
    ci_high: float
    cost_usd: float
    cost_per_case_usd: float
    p50_latency_s: float
    p95_latency_s: float
    approval_rate: float
    escalation_rate: float
    judge_cost_usd: float = 0.0
    by_category: dict[str, CategorySummary] = Field(default_factory=dict)


class EvalReport(_Frozen):
    """The comparison: every variant's summary and the recommendation.

    `simulated` is true when any variant ran on simulated models; every
    rendering of such a report says so in its title. `stopped_reason` says
    why an evaluation ended before scoring every case (budget, cancel).
    """

    eval_set: str
    variants: list[VariantSummary]
    recommended: str | None
    recommendation_rule: str
    simulated: bool
    judge_alias: str | None = None
    cases_scored: int
    cases_total: int
    stopped_reason: str | None = None
