"""Input, result and live state of a chain run.

All of these cross the Temporal boundary through the pydantic data converter
and are recorded in history: they may only grow with optional fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from activities.gateway.types import TokenUsage
from workflows.spec import ChainSpec

WORKFLOW_NAME = "ChainWorkflow"
STATE_QUERY = "state"

RunStatus = Literal["running", "completed", "failed"]
StepStatus = Literal["running", "completed", "failed"]
CallOutcome = Literal["ok", "invalid_output", "failed"]


class ChainInput(BaseModel):
    """What a client sends to start a run: the resolved spec itself (so a later
    edit of the chain never changes a run in flight) and the run's input."""

    spec: ChainSpec
    input: Any = None
    max_cost_usd: float | None = Field(default=None, gt=0)
    """Optional caller cap; the run uses the lower of this and the spec's limit."""


class ModelCallRecord(BaseModel):
    """One call_model activity as the step saw it (after Temporal's retries)."""

    alias: str
    model: str | None = None
    outcome: CallOutcome
    usage: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    error: str | None = None
    purpose: Literal["answer", "reask", "escalation", "fallback", "budget_fallback"] = "answer"


class CascadeDecision(BaseModel):
    from_alias: str
    to_alias: str
    escalated: bool
    reason: str


class StepRecord(BaseModel):
    name: str
    kind: str
    status: StepStatus
    output: Any = None
    model: str | None = None
    """Alias whose answer became the output (model steps)."""
    branch: str | None = None
    """Route steps: the branch taken (`branches[i]` or `otherwise`)."""
    cascade: CascadeDecision | None = None
    calls: list[ModelCallRecord] = Field(default_factory=list)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float = 0.0
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class ModelUsage(BaseModel):
    calls: int = 0
    usage: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float = 0.0
    latency_ms: float = 0.0


class UsageSummary(BaseModel):
    total: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float = 0.0
    per_model: dict[str, ModelUsage] = Field(default_factory=dict)
    per_step: dict[str, ModelUsage] = Field(default_factory=dict)


class BudgetState(BaseModel):
    max_cost_usd: float | None
    spent_usd: float
    reserved_usd: float
    max_steps: int
    steps_executed: int


class RunState(BaseModel):
    """Answer of the `state` query: what ops and `chorus run` show live."""

    chain: str
    version: int
    status: RunStatus
    current_steps: list[str]
    finished_steps: list[str]
    steps: dict[str, StepRecord]
    usage: UsageSummary
    budget: BudgetState
    error: str | None = None


class ChainResult(BaseModel):
    chain: str
    version: int
    status: RunStatus
    output: Any = None
    steps: dict[str, StepRecord]
    usage: UsageSummary
    error: str | None = None
    error_type: str | None = None
