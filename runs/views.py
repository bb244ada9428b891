"""How a run and its approvals look from outside: what the run client reads
from Temporal and the API returns as is (one definition of each shape)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

from core.statuses import RunStatus
from workflows.types import ApprovalState, ProviderWait, StepRecord, UsageSummary


class RunError(BaseModel):
    type: str | None = Field(
        default=None, description="ApplicationError type, e.g. BudgetExceeded."
    )
    message: str


class ApprovalView(BaseModel):
    """A pending approval as reviewers see it.

    `run_id` is always the workflow the decision is sent to
    (`POST /v1/runs/{run_id}/approvals/{approval_id}`): for an agent's tool
    approval that is the agent's child run, and `parent_run_id` names the
    chain run it belongs to (its `step` is the parent's agent step)."""

    run_id: str = Field(
        description="The run to decide the approval on: the chain run's id, or for an "
        "agent's tool approval its child run's id (`<parent run id>--<agent step>`)."
    )
    parent_run_id: str | None = Field(
        default=None,
        description="For an agent's tool approval, the chain run whose agent step asks "
        "for it; null for a chain run's own approval steps.",
    )
    chain: str | None = None
    approval_id: str
    step: str
    status: Literal["pending", "approved", "rejected"]
    text: str
    context: dict[str, str] = Field(default_factory=dict)
    instructions: str | None = None
    payload_hash: str = Field(description="Send it back with the decision.")
    required_role: str
    required_approvals: int
    approvals: list[str] = Field(default_factory=list)
    escalated: bool = False
    requested_at: datetime | None = None
    deadline: datetime | None = None

    @classmethod
    def of(
        cls,
        run_id: str,
        chain: str | None,
        approval: ApprovalState,
        *,
        parent_run_id: str | None = None,
    ) -> ApprovalView:
        return cls(
            run_id=run_id,
            chain=chain,
            parent_run_id=parent_run_id,
            **approval.model_dump(exclude={"decisions"}),
        )


class RunDetail(BaseModel):
    run_id: str
    temporal_run_id: str | None = None
    chain: str | None = None
    version: int | None = None
    status: RunStatus
    source: Literal["workflow", "result", "index"] = Field(
        description="`workflow`: live state queried from the running workflow; "
        "`result`: the closed run's result; `index`: only the database index answered."
    )
    current_steps: list[str] = Field(default_factory=list)
    pending_approvals: list[ApprovalView] = Field(
        default_factory=list,
        description="The run's pending approvals, then those of its running agent steps "
        "(each with the child's `run_id` to decide it on and `parent_run_id` set).",
    )
    steps: dict[str, StepRecord] = Field(default_factory=dict)
    usage: UsageSummary | None = None
    cost_usd: float = Field(
        default=0.0,
        description="What the run's model calls count for, `unconfirmed_usd` included.",
    )
    output: Any = None
    error: RunError | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created_by: str | None = None
    waits: list[ProviderWait] = Field(
        default_factory=list,
        description="Model calls of a running run that wait before they may go: "
        "`rate_limit` (this deployment's limits, or the provider's word, waited out on "
        "a timer) or `provider_retry` (Temporal retries the call at `until`, after the "
        "provider's Retry-After or a jittered backoff).",
    )

    @computed_field(  # type: ignore[prop-decorator]
        description="`waiting for provider until T: why` while a call waits, else null."
    )
    @property
    def waiting(self) -> str | None:
        return "; ".join(w.message for w in self.waits) if self.waits else None

    @computed_field(  # type: ignore[prop-decorator]
        description="Part of `cost_usd` counted at worst case: provider call attempts that "
        "may have been billed with no reply seen (a worker died after the request left). "
        "The provider's invoice says whether they were; the run never counts less."
    )
    @property
    def unconfirmed_usd(self) -> float:
        return self.usage.unconfirmed_usd if self.usage is not None else 0.0

    @computed_field(  # type: ignore[prop-decorator]
        description="How many provider call attempts `unconfirmed_usd` stands for."
    )
    @property
    def unconfirmed_attempts(self) -> int:
        return self.usage.unconfirmed_attempts if self.usage is not None else 0


class ApprovalList(BaseModel):
    items: list[ApprovalView]
    unavailable_runs: list[str] = Field(
        default_factory=list,
        description="Runs awaiting approval whose approvals could not be read just now "
        "(e.g. no worker polling); retry later.",
    )
