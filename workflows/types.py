"""Input, result and live state of a chain run.

All of these cross the Temporal boundary through the pydantic data converter
and are recorded in history: they may only grow with optional fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from activities.gateway.types import TokenUsage
from core.chain_spec import ChainSpec
from core.names import AGENT_WORKFLOW_NAME as AGENT_WORKFLOW_NAME
from core.names import DECIDE as DECIDE
from core.names import PENDING_APPROVALS_QUERY as PENDING_APPROVALS_QUERY
from core.names import STATE_QUERY as STATE_QUERY
from core.statuses import WorkflowRunStatus

RunStatus = WorkflowRunStatus
"""What a run's workflow reports (see core.statuses)."""
StepStatus = Literal["running", "awaiting_approval", "completed", "failed", "rejected"]
CallOutcome = Literal["ok", "invalid_output", "failed"]


class ChainInput(BaseModel):
    """What a client sends to start a run: the resolved spec itself (so a later
    edit of the chain never changes a run in flight) and the run's input."""

    spec: ChainSpec
    input: Any = None
    max_cost_usd: float | None = Field(default=None, gt=0)
    """Optional caller cap; the run uses the lower of this and the spec's limit."""
    checked: bool = False
    """Whether the client ran the chain's checks before starting it (the run
    client does when it has a catalog); when not, the workflow checks the
    chain's structure itself before its first step (`ChainWorkflow.run`)."""
    approvals: Literal["people", "auto_for_evaluation"] = "people"
    """`auto_for_evaluation`: an approval step that would ask people records
    that it was requested and goes on at once with the text as rendered, so
    an evaluation (`EvalWorkflow`) measures the chain's answers without
    parking hundreds of runs in the reviewers' inbox. Never set by the API's
    run starts; runs recorded before this field existed read `people`."""


class ModelCallRecord(BaseModel):
    """One call_model activity as the step saw it (after Temporal's retries)."""

    alias: str
    model: str | None = None
    outcome: CallOutcome
    usage: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float = 0.0
    """What the call counts for: its reply's cost plus `unconfirmed_usd`."""
    latency_ms: float = 0.0
    error: str | None = None
    purpose: Literal["answer", "reask", "escalation", "fallback", "budget_fallback"] = "answer"
    unconfirmed_usd: float = 0.0
    """Part of `cost_usd`: attempts that may have been billed with no reply
    seen (a worker died after the request left), at their worst case."""
    unconfirmed_attempts: int = 0


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
    violations: list[str] = Field(default_factory=list)
    """Guard steps: the violations found, attempt by attempt."""
    calls: list[ModelCallRecord] = Field(default_factory=list)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float = 0.0
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    unconfirmed_usd: float = 0.0
    """Part of `cost_usd` counted at worst case, unconfirmed (see ModelCallRecord)."""
    unconfirmed_attempts: int = 0


class ModelUsage(BaseModel):
    calls: int = 0
    usage: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    unconfirmed_usd: float = 0.0
    """Part of `cost_usd` counted at worst case, unconfirmed."""
    unconfirmed_attempts: int = 0


class UsageSummary(BaseModel):
    total: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float = 0.0
    """Everything the run's model calls count for, `unconfirmed_usd` included."""
    per_model: dict[str, ModelUsage] = Field(default_factory=dict)
    per_step: dict[str, ModelUsage] = Field(default_factory=dict)
    unconfirmed_usd: float = 0.0
    """Part of `cost_usd` counted at worst case: provider call attempts that
    may have been billed with no reply seen (a worker died after sending).
    The provider's invoice says whether they were; the run never counts less."""
    unconfirmed_attempts: int = 0


class BudgetState(BaseModel):
    max_cost_usd: float | None
    spent_usd: float
    reserved_usd: float
    max_steps: int
    steps_executed: int
    unconfirmed_usd: float = 0.0
    """Part of `spent_usd` counted at worst case, unconfirmed."""


class ProviderWait(BaseModel):
    """A model call that waits before it may go, and until when."""

    kind: Literal["rate_limit", "provider_retry"]
    """`rate_limit`: the deployment's limiter (the run waits on a timer);
    `provider_retry`: Temporal retries the call after the provider's
    Retry-After or a jittered backoff (read from Temporal by the run client)."""
    step: str | None = None
    alias: str | None = None
    until: datetime | None = None
    reason: str
    attempt: int | None = None
    """`provider_retry`: the attempt that will start at `until`."""

    @property
    def message(self) -> str:
        when = self.until.isoformat(timespec="seconds") if self.until else "later"
        where = f" ({self.alias})" if self.alias else ""
        return f"waiting for provider{where} until {when}: {self.reason}"


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
    approvals: list[ApprovalState] = Field(default_factory=list)
    error: str | None = None
    error_type: str | None = None
    """Set with `error` when the run is failing (a `failed` status never
    comes without its type)."""
    ignored_signals: list[str] = Field(default_factory=list)
    """`decide` signals the run could not apply, with the reason (a signal
    cannot be refused to its sender)."""
    waits: list[ProviderWait] = Field(default_factory=list)
    """Model calls waiting out a rate limit on a timer (this deployment's
    `rpm`/`tpm`/`max_concurrent`, or what the provider said)."""


class ChainResult(BaseModel):
    chain: str
    version: int
    status: RunStatus
    output: Any = None
    steps: dict[str, StepRecord]
    usage: UsageSummary
    approvals: list[ApprovalState] = Field(default_factory=list)
    error: str | None = None
    error_type: str | None = None


DecisionKind = Literal["approve", "reject", "edit"]
ApprovalStatus = Literal["pending", "approved", "rejected"]


class ApprovalDecision(BaseModel):
    """What a reviewer sends. `payload_hash` binds the decision to what the
    reviewer saw: a decision on a payload that has changed since is stale."""

    model_config = ConfigDict(extra="forbid")
    """A misspelt field (`coment`) is a malformed decision, not a silent loss."""

    approval_id: str = Field(min_length=1)
    decision: DecisionKind
    reviewer: str = Field(min_length=1, max_length=200)
    reviewer_roles: list[str] = Field(default_factory=list)
    payload_hash: str = Field(min_length=1)
    comment: str | None = Field(default=None, max_length=10_000)
    edited_text: str | None = None


class ReviewerDecision(BaseModel):
    reviewer: str
    decision: DecisionKind | Literal["timeout_approve", "timeout_reject", "escalate"]
    comment: str | None = None
    at: datetime
    payload_hash: str


class ApprovalState(BaseModel):
    """One approval as reviewers and ops see it (`pending_approvals` query)."""

    approval_id: str
    step: str
    status: ApprovalStatus
    text: str
    context: dict[str, str] = Field(default_factory=dict)
    instructions: str | None = None
    payload_hash: str
    required_role: str
    required_approvals: int
    approvals: list[str] = Field(default_factory=list)
    """Reviewers whose approval of the current payload counts."""
    decisions: list[ReviewerDecision] = Field(default_factory=list)
    escalated: bool = False
    requested_at: datetime
    deadline: datetime


class DecisionOutcome(BaseModel):
    """The Update's answer: where the approval stands after this decision."""

    approval_id: str
    status: ApprovalStatus
    approvals: int
    required_approvals: int
    payload_hash: str
    """The current payload's hash (new after an edit)."""


class ApprovalRejection:
    """`ApplicationError.type` values the `decide` validator rejects with;
    the API maps them to HTTP statuses."""

    NOT_FOUND = "ApprovalNotFound"  # 404
    ALREADY_DECIDED = "ApprovalAlreadyDecided"  # 409
    STALE = "StaleApprovalPayload"  # 409
    DUPLICATE_REVIEWER = "ReviewerAlreadyDecided"  # 409
    FORBIDDEN = "ReviewerRoleMissing"  # 403
    MALFORMED = "MalformedDecision"  # 422


RunState.model_rebuild()
ChainResult.model_rebuild()
