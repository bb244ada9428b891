"""Payloads of an evaluation: the EvalWorkflow's input, progress and the
inputs and results of its activities.

They cross the Temporal boundary through the pydantic data converter and are
recorded in histories: add optional fields, never rename or remove one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from core.chain_spec import ChainSpec
from core.evals.results import CaseRunFacts
from core.evals.spec import EvalCase, EvalSet

MAX_CONCURRENCY = 64
"""Child runs at once; more would only queue behind the workers."""
DEFAULT_CASES_PER_RUN = 100
"""Cases an EvalWorkflow run finishes before it continues as new, so its
history stays bounded (about 12 events and two chain results a case)."""


class EvalVariant(BaseModel):
    """One chain under comparison: the name the report uses and the spec
    itself (a later edit of the chain never changes an evaluation in flight)."""

    name: str = Field(min_length=1, max_length=100)
    spec: ChainSpec


class VariantProgress(BaseModel):
    """One variant's counters: all an EvalWorkflow keeps of its cases (the
    scores themselves are in the database)."""

    variant: str
    total: int
    done: int = 0
    """Cases scored."""
    passed: int = 0
    in_flight: int = 0
    cut: int = 0
    """Cases whose run the evaluation's budget cut short: not scored."""
    cost_usd: float = 0.0
    """What the variant's runs cost (the judge's cost is apart)."""
    judge_cost_usd: float = 0.0
    approvals_requested: int = 0
    escalated: int = 0


class EvalCarry(BaseModel):
    """What an EvalWorkflow hands to its next run when it continues as new."""

    done: list[str] = Field(default_factory=list)
    """`variant/case` keys whose child run has finished (scored or cut)."""
    variants: list[VariantProgress] = Field(default_factory=list)
    spent_usd: float = 0.0
    observed_max_usd: dict[str, float] = Field(default_factory=dict)
    """The most a case of each variant has cost so far (what the next one needs)."""
    stopped_reason: str | None = None
    generation: int = 0


class EvalInput(BaseModel):
    """What starts an evaluation: every case of `eval_set` through every variant."""

    eval_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")
    eval_set: EvalSet
    variants: list[EvalVariant] = Field(min_length=1, max_length=20)
    concurrency: int = Field(default=4, ge=1, le=MAX_CONCURRENCY)
    max_cost_usd: float | None = Field(default=None, gt=0)
    """The whole evaluation's budget; None: each chain's own limit only. The
    judge's calls count in what is spent but are not capped by it (a judge
    call has no reservation), so a judged evaluation can pass it by at most
    one judge call per case in flight."""
    judge_alias: str | None = Field(default=None, min_length=1, max_length=100)
    simulated: bool = False
    """Whether the deployment's models are the simulator's (the report says so)."""
    created_by: str | None = None
    cases_per_run: int = Field(default=DEFAULT_CASES_PER_RUN, ge=1)
    carry: EvalCarry | None = None
    """Set by the workflow itself when it continues as new."""

    @model_validator(mode="after")
    def _unique_variants(self) -> EvalInput:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variants must be distinct: {', '.join(names)}")
        return self

    @property
    def cases_total(self) -> int:
        return len(self.eval_set.cases) * len(self.variants)


EvalStatus = Literal["running", "completed", "stopped"]


class EvalProgress(BaseModel):
    """Answer of the `progress` query: where the evaluation stands."""

    eval_id: str
    eval_set: str
    status: EvalStatus
    cases_total: int
    cases_done: int
    variants: list[VariantProgress]
    spent_usd: float
    reserved_usd: float
    max_cost_usd: float | None
    stopped_reason: str | None = None
    created_by: str | None = None
    """Who started it (the API's key name), so a service key reads only its own."""


class BeginEvalInput(BaseModel):
    eval_id: str
    eval_set: str
    variants: list[str]
    cases_total: int
    concurrency: int
    max_cost_usd: float | None
    judge_alias: str | None
    simulated: bool
    created_by: str | None


class JudgeVerdict(BaseModel):
    """What the judge model said of one answer (its cost is reported apart)."""

    alias: str
    score: float | None = None
    cost_usd: float = 0.0
    error: str | None = None
    """Why there is no score (the judge failed or answered off the rubric)."""


class ScoreCaseInput(BaseModel):
    """One finished child run to score: the facts the workflow gathered from
    its result, and the judge's verdict when one was asked."""

    eval_id: str
    case: EvalCase
    facts: CaseRunFacts
    judge: JudgeVerdict | None = None


class CaseOutcome(BaseModel):
    """What the workflow counts of a scored case (the score is in the database)."""

    variant: str
    case_id: str
    passed: bool
    cost_usd: float
    judge_cost_usd: float = 0.0
    approvals_requested: int = 0
    escalated: bool = False
    stored: bool = True
    """False when a retried activity found the score already stored."""


class FinishEvalInput(BaseModel):
    eval_id: str
    eval_set: str
    cases_total: int
    simulated: bool
    judge_alias: str | None
    stopped_reason: str | None
